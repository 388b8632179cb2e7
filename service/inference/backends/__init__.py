"""Model runtimes behind one small protocol; ``load_backend`` picks one by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry import layout
from service.inference.backends.base import Backend


def load_backend(
    kind: str,
    version_dir: Path,
    metadata: dict[str, Any],
    *,
    device: str,
    intra_op_threads: int,
    inter_op_threads: int,
    max_batch_rows: int | None = None,
) -> Backend:
    """Load one verified version folder (from ``Registry.version_dir``) on the named runtime."""
    if kind == "onnx":
        from service.inference.backends.onnx_backend import OnnxBackend

        return OnnxBackend(
            version_dir / layout.ONNX_FILE,
            metadata,
            device=device,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
            expected_sha256=metadata.get("files", {}).get(layout.ONNX_FILE),
            max_batch_rows=max_batch_rows,
        )
    if kind == "savedmodel":
        # Imported here so that TensorFlow loads only when asked for.
        from service.inference.backends.savedmodel_backend import SavedModelBackend

        return SavedModelBackend(
            version_dir / layout.SAVEDMODEL_DIR,
            metadata,
            device=device,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
        )
    raise ValueError(f"unknown backend {kind!r}; use onnx or savedmodel")


__all__ = ["Backend", "load_backend"]
