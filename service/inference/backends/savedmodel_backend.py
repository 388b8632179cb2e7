"""TensorFlow SavedModel runtime, for comparison and for platforms without onnxruntime.

TensorFlow is imported here only, and this module only when MNIST_BACKEND=savedmodel,
so the ONNX serving path never pays for (or needs) TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from service.errors import DeviceUnavailable, ModelLoadError


class SavedModelBackend:
    name = "savedmodel"

    def __init__(
        self,
        model_path: Path,
        metadata: dict[str, Any],
        *,
        device: str = "auto",
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> None:
        import tensorflow as tf

        try:
            # Only possible before TensorFlow starts its runtime; later loads keep the first setting.
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        except RuntimeError:
            pass
        gpus = tf.config.list_physical_devices("GPU")
        if device == "cuda" and not gpus:
            raise DeviceUnavailable(
                "MNIST_DEVICE=cuda but TensorFlow sees no GPU; install a CUDA build of TensorFlow, check the driver "
                "with nvidia-smi, or set MNIST_DEVICE=cpu."
            )
        self.device = "cuda" if gpus and device != "cpu" else "cpu"
        self.providers = [d.name for d in (gpus if self.device == "cuda" else tf.config.list_physical_devices("CPU"))]
        try:
            self.input_name = str(metadata["input"]["name"])
            self.output_names = (
                str(metadata["outputs"]["probabilities"]["name"]),
                str(metadata["outputs"]["features"]["name"]),
            )
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"metadata.json lacks the input/outputs names ({exc!r})") from exc
        self._tf = tf
        self._device_name = "/GPU:0" if self.device == "cuda" else "/CPU:0"
        try:
            with tf.device(self._device_name):
                self._loaded: Any = tf.saved_model.load(str(model_path))
            self._fn: Any = self._loaded.signatures["serving_default"]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"TensorFlow cannot load model.savedmodel: {str(exc)[:300]}") from exc

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._fn is None:
            raise RuntimeError("backend is closed")
        with self._tf.device(self._device_name):
            out = self._fn(**{self.input_name: self._tf.constant(images)})
        return out[self.output_names[0]].numpy(), out[self.output_names[1]].numpy()

    def close(self) -> None:
        self._fn = None
        self._loaded = None
