"""The default runtime: onnxruntime on the version's ``model.onnx``.

External data is refused without needing the ``onnx`` package (absent from the
serving image): the session is built from the bytes we just checksummed, and
onnxruntime is told to look for external initializers in a fresh, empty
private folder. A model that references any other file therefore fails to
load, wherever it points, and nothing is read from disk after the checksum.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.errors import ModelLoadError
from service.inference.backends.devices import check_device, select_providers

# onnxruntime's documented config key for models loaded from memory.
_EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"


class OnnxBackend:
    name = "onnx"

    def __init__(
        self,
        model_path: Path,
        metadata: dict[str, Any],
        *,
        device: str = "auto",
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        expected_sha256: str | None = None,
        max_batch_rows: int | None = None,
    ) -> None:
        # Providers first: a wrong MNIST_DEVICE is a configuration error and must say so, not look like a bad model.
        providers = select_providers(device, ort.get_available_providers())
        try:
            self.input_name = str(metadata["input"]["name"])
            self.output_names = [
                str(metadata["outputs"]["probabilities"]["name"]),
                str(metadata["outputs"]["features"]["name"]),
            ]
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"metadata.json lacks the input/outputs names ({exc!r})") from exc

        model_bytes = Path(model_path).read_bytes()
        if expected_sha256 is not None and hashlib.sha256(model_bytes).hexdigest() != expected_sha256:
            raise ModelLoadError(f"{Path(model_path).name} changed after verification; refusing it")

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        with tempfile.TemporaryDirectory(prefix="mnist-no-external-data-") as empty:
            options.add_session_config_entry(_EXTERNAL_FOLDER_KEY, empty)
            try:
                self._session: ort.InferenceSession | None = ort.InferenceSession(
                    model_bytes, sess_options=options, providers=providers
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                if "external data" in str(exc).lower():
                    raise ModelLoadError(
                        "model.onnx references external data files; a version must be one self-contained file"
                    ) from exc
                raise ModelLoadError(f"onnxruntime cannot load model.onnx: {str(exc)[:300]}") from exc

        self.providers = list(self._session.get_providers())
        self.device = check_device(device, self.providers)
        # cuDNN caches its convolution algorithm for the last input shape only: batches of
        # changing size re-run the algorithm search on every call (~20 ms each on an H200,
        # against 0.2 ms for the model). On CUDA every call is padded to one fixed size.
        self._pad_rows = max_batch_rows if self.device == "cuda" else None
        known_inputs = {i.name for i in self._session.get_inputs()}
        known_outputs = {o.name for o in self._session.get_outputs()}
        if self.input_name not in known_inputs or not set(self.output_names) <= known_outputs:
            raise ModelLoadError(
                f"model.onnx signature {sorted(known_inputs)} -> {sorted(known_outputs)} does not match metadata "
                f"{self.input_name} -> {self.output_names}"
            )

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._session is None:
            raise RuntimeError("backend is closed")
        rows = len(images)
        if self._pad_rows is not None and rows < self._pad_rows:
            padding = np.zeros((self._pad_rows - rows, *images.shape[1:]), dtype=images.dtype)
            images = np.concatenate([images, padding])
        probs, features = self._session.run(self.output_names, {self.input_name: images})
        return np.asarray(probs)[:rows], np.asarray(features)[:rows]

    def close(self) -> None:
        # onnxruntime frees the session with its last reference; nothing else holds one.
        self._session = None
