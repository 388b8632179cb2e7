"""What a run writes into its version's ``metadata.json``, through the registry's one schema.

The serving facts (input, outputs, preprocessing, labels) are the ones the service reads back from
``registry.metadata.ModelMetadata``; the rest is the run's record for the model card: the flags it
ran with, the data, the metrics, the guards' calibration, the code and library versions.
"""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any

from registry import InputSpec, ModelMetadata, TensorSpec, layout
from training.config import TrainConfig
from training.data import Splits
from training.train import Fitted, version_preprocessing


def version_metadata(
    config: TrainConfig,
    splits: Splits,
    fitted: Fitted,
    metrics: dict[str, Any],
    guards_spec: dict[str, Any],
    promotion: dict[str, Any],
) -> ModelMetadata:
    side = layout.IMAGE_SIDE
    features = int(fitted.model.outputs[1].shape[-1])
    return ModelMetadata(
        input=InputSpec(layout.INPUT_NAME, (None, side, side, 1), dtype="float32", layout="NHWC"),
        outputs={
            layout.OUTPUT_PROBABILITIES: TensorSpec(layout.OUTPUT_PROBABILITIES, (None, layout.NUM_CLASSES)),
            layout.OUTPUT_FEATURES: TensorSpec(layout.OUTPUT_FEATURES, (None, features)),
        },
        preprocessing=version_preprocessing(config),
        labels=tuple(range(layout.NUM_CLASSES)),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        git_commit=_git_commit(),
        parameters=int(fitted.model.count_params()),
        training_config=config.to_dict(),
        data={"source": splits.source, "sizes": splits.sizes(), "sha256": splits.sha256()},
        metrics=metrics,
        guards_calibration=guards_spec["calibration"],
        training={
            "seconds": round(fitted.seconds, 1),
            "epochs_run": len(fitted.history.get("loss", [])),
            "best_epoch": fitted.best_epoch,  # set when early stopping kept an earlier epoch's weights
            "history": fitted.history,
        },
        promotion=promotion,
        library_versions=_library_versions(),
    )


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _library_versions() -> dict[str, str]:
    names = ["tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found
