"""Running the model: the batcher, the model manager (load, verify, warm up, hot swap) and the backends."""
