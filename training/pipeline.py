"""The training recipe, top to bottom: data, fit, evaluate, calibrate the guards, export, register, promote."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digits.guards import Guards
from registry import AliasMoved, ModelMetadata, Registry, layout
from registry.report import Recipe
from training import evaluate, export, model_card, promotion
from training.config import TrainConfig
from training.data import Splits, load_splits
from training.failures import Diverged, Stages
from training.metadata import version_metadata
from training.train import Fitted, as_model_input, fit, served_input, version_preprocessing


def run(config: TrainConfig, stages: Stages | None = None) -> dict[str, Any]:
    """One version, start to end; ``stages`` hears where the run is (a failure's message says so)."""
    stages = stages or Stages()
    started = time.perf_counter()
    stages.enter("data")
    splits = load_splits(
        Path(config.data) if config.data else None, seed=config.seed, download_timeout_s=config.download_timeout
    ).limited(config.limit)
    print(f"data: {splits.source} {splits.sizes()}")
    stages.enter("fit", Recipe.from_config(config.to_dict()).summary())
    fitted = fit(splits, config)
    result = finish(config, splits, fitted, stages)
    result["total_seconds"] = time.perf_counter() - started
    return result


def finish(config: TrainConfig, splits: Splits, fitted: Fitted, stages: Stages) -> dict[str, Any]:
    """A fitted model made into a version: evaluate, calibrate the guards, export, register, promote or not."""
    started = time.perf_counter()
    registry = Registry(config.registry)
    stages.enter("evaluation")
    metrics, adversarial = _evaluate(registry, config, splits, fitted)
    stages.enter("guard calibration")
    guards_spec, metrics["guards"] = _calibrate_guards(config, splits, fitted, adversarial)
    stages.enter("export", "Keras, SavedModel, ONNX; parity on held-out digits")
    staging = registry.new_staging_dir()
    try:
        metrics.update(_export(staging, config, splits, fitted, guards_spec, metrics))
        stages.enter("registration")
        decision = promotion.decide(
            registry, metrics["test_accuracy"], config.accuracy_floor, splits.x_test, splits.y_test,
            (splits.source, config.seed),
        )  # fmt: skip
        promote, reason = decision.promote and config.promote, decision.reason
        if not config.promote:
            reason = f"--no-promote given ({decision.reason})"
        # The gate's verdict when the version was published, which the files keep: whether the version serves is
        # the production alias's to say (another run may move it before this one's compare-and-set below).
        verdict = {"verdict": "promote" if promote else "keep", "reason": reason}
        metadata = version_metadata(config, splits, fitted, metrics, guards_spec, verdict)
        version = registry.publish(staging, metadata, finalize=_card_writer(metadata))
        stages.registered = version
    finally:
        registry.discard(staging)  # after a publish the folder has been renamed: nothing left to remove
    promoted = False
    if promote:
        stages.enter("promotion")
        promoted, reason = _promote(registry, version, decision, metrics, config, splits)
    return {
        "version": version,
        "promoted": promoted,
        "reason": reason,
        "source": splits.source,
        "sizes": splits.sizes(),
        "epochs": config.epochs,
        "epochs_run": len(fitted.history.get("loss", [])),
        "best_epoch": fitted.best_epoch,
        "train_seconds": fitted.seconds,
        "total_seconds": fitted.seconds + time.perf_counter() - started,
        "metrics": metrics,
        "path": str(registry.version_dir(version)),
    }


def _held_out(splits: Splits, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Test digits first, topped up with validation digits: never seen in training."""
    return np.concatenate([splits.x_test, splits.x_val])[:n], np.concatenate([splits.y_test, splits.y_val])[:n]


def _evaluate(
    registry: Registry, config: TrainConfig, splits: Splits, fitted: Fitted
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Accuracy and calibration on the test digits, FGSM robustness, and the production model beside them; every
    digit as the service presents it to the model (softened, scaled), each model with its own preprocessing.

    Returns the metrics and the FGSM examples by epsilon (the guards are scored on them next): each a perturbation of
    the model's input itself, after the softening, which no client can send (the service softens every input): an
    upper bound on what an attacker achieves through the service.
    """
    model, preprocessing = fitted.model, version_preprocessing(config)
    probs_test, _ = evaluate.predict(model, served_input(splits.x_test, preprocessing))
    metrics = evaluate.classification_metrics(probs_test, splits.y_test)
    metrics["scored_as_served"] = True  # registry.report.Evaluation: older versions scored unsoftened digits
    digits_rob, y_rob = _held_out(splits, config.robustness_samples)
    adversarial = evaluate.fgsm_robustness(fitted.classifier, served_input(digits_rob, preprocessing), y_rob)
    metrics["fgsm"] = {
        eps: float((evaluate.predict(model, x_adv)[0].argmax(1) == y_rob).mean()) for eps, x_adv in adversarial.items()
    }
    metrics["robustness_images"] = len(y_rob)
    metrics["compared_with"] = promotion.production_comparison(
        registry, splits.x_test, splits.y_test, digits_rob, y_rob
    )
    return metrics, adversarial


def _calibrate_guards(
    config: TrainConfig, splits: Splits, fitted: Fitted, adversarial: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The guards' statistics and thresholds (guards.json), and what they refuse: digits, noise and clothing as
    served, FGSM examples as made (on the softened input).

    Calibrated on the digits unsoftened: they sit a little further from the (blurred) training digits than the
    softened ones the service presents, as pictures do, so the thresholds keep a margin for pictures. Calibrated on
    softened digits the same model refused 7.2 % of canvases and 2.4 % of JSON digits (0.6 and 0.4 % so) for
    clothing refused 92.3 % as PNGs (91.6 %; benchmarks/README.md).
    """
    model, preprocessing = fitted.model, version_preprocessing(config)
    x_train, x_val = as_model_input(splits.x_train), as_model_input(splits.x_val)
    try:
        spec = evaluate.calibrate_guards(model, x_train, splits.y_train, x_val, config.target_false_rejection)
        guards = Guards(spec)
    except ValueError as exc:
        # A rate far too large can leave the (clipped) loss a number while the features grow past what their
        # covariance holds: statistics that are no numbers, from weights that are no model.
        raise Diverged(
            f"the network's features grew too large for the guards' statistics ({exc}); lower --learning-rate "
            "(or use the optimizer's default)"
        ) from None
    side = layout.IMAGE_SIDE
    noise = np.random.default_rng(config.seed).integers(0, 256, size=(200, side, side), dtype=np.uint8)
    clothing = evaluate.fashion_images(Path(config.ood_data) if config.ood_data else None)

    def refused_as_served(images: np.ndarray) -> float:
        return evaluate.refusal_rate(guards, model, served_input(images, preprocessing))

    refused = {
        "fashion_refused": None if clothing is None else refused_as_served(clothing),
        "test_digits_refused": refused_as_served(splits.x_test),
        "noise_refused": refused_as_served(noise),
        "fgsm_refused": {eps: evaluate.refusal_rate(guards, model, x_adv) for eps, x_adv in adversarial.items()},
    }
    return spec, refused


def _export(
    staging: Path,
    config: TrainConfig,
    splits: Splits,
    fitted: Fitted,
    guards_spec: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """Write every runtime's model, the guards and the plots into the staging folder, and prove the runtimes
    agree on held-out digits (ParityError otherwise). Returns the parity and latency metrics."""
    model = fitted.model
    model.save(staging / layout.KERAS_FILE)
    export.export_savedmodel(model, staging / layout.SAVEDMODEL_DIR)
    export.export_onnx(model, staging / layout.ONNX_FILE)
    x_parity = served_input(_held_out(splits, config.parity_samples)[0], version_preprocessing(config))
    parity = export.check_parity(model, staging / layout.SAVEDMODEL_DIR, staging / layout.ONNX_FILE, x_parity)
    latency = export.onnx_latency_us(staging / layout.ONNX_FILE, x_parity[:64])
    (staging / layout.GUARDS_FILE).write_text(json.dumps(guards_spec))
    evaluate.plot_confusion(metrics["confusion_matrix"], staging / "confusion_matrix.png")
    evaluate.plot_curves(fitted.history, staging / "training_curves.png")
    return {"parity": parity, "latency_us_per_image": latency}


def _card_writer(metadata: ModelMetadata) -> Callable[[int, Path], None]:
    """The publish step that needs the version number: the model card."""

    def write_card(version: int, folder: Path) -> None:
        (folder / layout.MODEL_CARD_FILE).write_text(model_card.render(metadata, version))

    return write_card


def _promote(
    registry: Registry,
    version: int,
    decision: promotion.Decision,
    metrics: dict[str, Any],
    config: TrainConfig,
    splits: Splits,
) -> tuple[bool, str]:
    """Compare-and-set promotion: if another run moved production meanwhile, decide again against it."""
    for _ in range(3):
        try:
            registry.promote(version, layout.PRODUCTION, reason=decision.reason, expected=decision.champion_version)
            return True, decision.reason
        except AliasMoved:
            decision = promotion.decide(
                registry, metrics["test_accuracy"], config.accuracy_floor, splits.x_test, splits.y_test,
                (splits.source, config.seed),
            )  # fmt: skip
            if not decision.promote:
                return False, decision.reason
    return False, "production kept changing during promotion; registered without promotion"


def _refusal_line(g: dict[str, Any]) -> str:
    fashion = "n/a" if g.get("fashion_refused") is None else f"{100 * g['fashion_refused']:.1f} %"
    return (
        f"{100 * g['test_digits_refused']:.2f} % of test digits; non-digits: noise "
        f"{100 * g['noise_refused']:.1f} %, clothing {fashion}"
    )


def _epochs(result: dict[str, Any]) -> str:
    if result["best_epoch"] is None:
        return str(result["epochs_run"])
    return f"{result['epochs_run']} of {result['epochs']}, weights of epoch {result['best_epoch']} kept"


def print_summary(result: dict[str, Any]) -> None:
    m = result["metrics"]
    rows = [
        ("data source", f"{result['source']} {result['sizes']}"),
        ("epochs / fit time", f"{_epochs(result)} / {result['train_seconds']:.1f} s"),
        ("total time", f"{result['total_seconds']:.1f} s"),
        ("test loss / accuracy", f"{m['test_loss']:.4f} / {100 * m['test_accuracy']:.2f} %  (ECE {m['ece']:.4f})"),
        ("FGSM accuracy", ", ".join(f"eps {k}: {100 * v:.1f} %" for k, v in m["fgsm"].items())),
        ("refused by guards", _refusal_line(m["guards"])),
        (
            "ONNX CPU µs/image",
            f"batch 1: {m['latency_us_per_image']['batch_1']}, batch 64: {m['latency_us_per_image']['batch_64']}",
        ),
        ("parity", f"max |diff| {max(m['parity']['max_abs_diff_onnx'], m['parity']['max_abs_diff_savedmodel']):.1e}"),
        ("version", f"{result['version']} -> {result['path']}"),
        ("production", f"{'PROMOTED' if result['promoted'] else 'not promoted'}: {result['reason']}"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n" + "=" * 72)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("=" * 72)
