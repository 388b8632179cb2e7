"""What the batcher and the model manager need from a runtime, and nothing more."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """One loaded model version on one runtime.

    ``run`` takes ``[N, 28, 28, 1]`` float32 already scaled as the metadata says and
    returns ``(probabilities [N, C], features [N, K])``. Implementations need not be
    thread-safe: the batcher calls them from a single dedicated thread.
    """

    name: str  # "onnx" or "savedmodel"
    device: str  # the device actually in use ("cpu" or "cuda"), not the one asked for
    providers: list[str]  # runtime detail for /status (ONNX execution providers, TF devices)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...
