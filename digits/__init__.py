"""What training and the service both do to a digit: shape a picture like an MNIST digit
(``digits.normalise``) and judge whether the model should answer it (``digits.guards``).

numpy and Pillow only: no TensorFlow, no FastAPI, nothing from ``service/`` or ``training/``.
"""
