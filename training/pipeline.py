"""The training recipe, top to bottom: data, fit, evaluate, export, verify, register, promote."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from registry import AliasMoved, Registry, layout
from service.guards import Guards
from training import evaluate, export, model_card, promotion
from training.config import TrainConfig
from training.data import DataError, Splits, load_splits, read_idx
from training.train import as_model_input, fit


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


def _held_out(splits: Splits, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Test digits first, topped up with validation digits: never seen in training."""
    x = np.concatenate([splits.x_test, splits.x_val])[:n]
    y = np.concatenate([splits.y_test, splits.y_val])[:n]
    return as_model_input(x), y


def _fashion_refusal(config: TrainConfig, guards: Guards, model: object) -> float | None:
    """Share of clothing images refused, when a Fashion-MNIST copy is at hand (Debian: dataset-fashion-mnist)."""
    folder = Path(config.ood_data) if config.ood_data else None
    if folder is None or not folder.is_dir():
        return None
    try:
        images = read_idx(next(folder.glob("t10k-images-idx3-ubyte*")))[:1000]
    except (StopIteration, OSError, DataError):
        return None
    return evaluate.refusal_rate(guards, model, as_model_input(images))


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
                registry, metrics["test_accuracy"], config.accuracy_floor, splits.x_test, splits.y_test
            )
            if not decision.promote:
                return False, decision.reason
    return False, "production kept changing during promotion; registered without promotion"


def _compare_with_production(
    registry: Registry, x_test: np.ndarray, y_test: np.ndarray, x_rob: np.ndarray, y_rob: np.ndarray
) -> dict[str, Any] | None:
    """Clean and FGSM accuracy of the current production model on this run's data.

    This is how the card of an adversarially trained model shows the plain
    model beside it (and the other way round).
    """
    import keras

    version = registry.aliases().get(layout.PRODUCTION)
    if version is None:
        return None
    try:
        meta = registry.verify(version)
        reference = keras.saving.load_model(registry.version_dir(version) / layout.KERAS_FILE, safe_mode=True)
    except Exception as exc:  # a broken champion only loses its comparison
        print(f"note: production v{version} not compared ({exc})")
        return None
    classifier = keras.Model(reference.inputs, reference.outputs[0])
    adversarial = evaluate.fgsm_robustness(classifier, x_rob, y_rob)
    return {
        "version": version,
        "adversarial": meta.get("training_config", {}).get("adversarial"),
        "test_accuracy": float((evaluate.predict(reference, x_test)[0].argmax(1) == y_test).mean()),
        "fgsm": {
            eps: float((evaluate.predict(reference, x_adv)[0].argmax(1) == y_rob).mean())
            for eps, x_adv in adversarial.items()
        },
    }


def run(config: TrainConfig) -> dict[str, Any]:
    started = time.perf_counter()
    registry = Registry(config.registry)

    # 1. data
    splits = load_splits(
        Path(config.data) if config.data else None, seed=config.seed, download_timeout_s=config.download_timeout
    )
    print(f"data: {splits.source} {splits.sizes()}")

    # 2. fit
    fitted = fit(splits, config)
    model = fitted.model
    x_test = as_model_input(splits.x_test)

    # 3. evaluate
    probs_test, _ = evaluate.predict(model, x_test)
    metrics = evaluate.classification_metrics(probs_test, splits.y_test)
    x_rob, y_rob = _held_out(splits, config.robustness_samples)
    adversarial = evaluate.fgsm_robustness(fitted.classifier, x_rob, y_rob)
    metrics["fgsm"] = {
        eps: float((evaluate.predict(model, x_adv)[0].argmax(1) == y_rob).mean()) for eps, x_adv in adversarial.items()
    }
    metrics["robustness_images"] = len(y_rob)
    metrics["compared_with"] = _compare_with_production(registry, x_test, splits.y_test, x_rob, y_rob)
    x_train = as_model_input(splits.x_train[: config.limit] if config.limit else splits.x_train)
    y_train = splits.y_train[: config.limit] if config.limit else splits.y_train
    guards_spec = evaluate.calibrate_guards(
        model, x_train, y_train, as_model_input(splits.x_val), config.target_false_rejection
    )
    guards = Guards(guards_spec)
    rng = np.random.default_rng(config.seed)
    noise = rng.uniform(0, 1, size=(200, 28, 28, 1)).astype(np.float32)
    metrics["guards"] = {
        "fashion_refused": _fashion_refusal(config, guards, model),
        "test_digits_refused": evaluate.refusal_rate(guards, model, x_test),
        "noise_refused": evaluate.refusal_rate(guards, model, noise),
        "fgsm_refused": {
            eps: evaluate.refusal_rate(guards, model, x_adv)
            for eps, x_adv in adversarial.items()
            if eps in ("0.1", "0.2")
        },
    }

    # 4. export into a private staging folder, then prove the runtimes agree
    staging = registry.new_staging_dir()
    try:
        model.save(staging / layout.KERAS_FILE)
        export.export_savedmodel(model, staging / layout.SAVEDMODEL_DIR)
        export.export_onnx(model, staging / layout.ONNX_FILE)
        x_parity, _ = _held_out(splits, config.parity_samples)
        metrics["parity"] = export.check_parity(
            model, staging / layout.SAVEDMODEL_DIR, staging / layout.ONNX_FILE, x_parity
        )
        metrics["latency_us_per_image"] = export.onnx_latency_us(staging / layout.ONNX_FILE, x_parity[:64])
        (staging / layout.GUARDS_FILE).write_text(json.dumps(guards_spec))
        evaluate.plot_confusion(metrics["confusion_matrix"], staging / "confusion_matrix.png")
        evaluate.plot_curves(fitted.history, staging / "training_curves.png")

        # 5. decide promotion on the same test data, then publish atomically
        decision = promotion.decide(
            registry, metrics["test_accuracy"], config.accuracy_floor, splits.x_test, splits.y_test
        )
        meta = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": _git_commit(),
            "training_config": config.to_dict(),
            "data": {"source": splits.source, "sizes": splits.sizes(), "sha256": splits.sha256()},
            "parameters": int(model.count_params()),
            "input": {
                "name": layout.INPUT_NAME,
                "shape": [None, layout.IMAGE_SIDE, layout.IMAGE_SIDE, 1],
                "dtype": "float32",
                "layout": "NHWC",
            },
            "outputs": {
                layout.OUTPUT_PROBABILITIES: {"name": layout.OUTPUT_PROBABILITIES, "shape": [None, 10]},
                layout.OUTPUT_FEATURES: {
                    "name": layout.OUTPUT_FEATURES,
                    "shape": [None, int(model.outputs[1].shape[-1])],
                },
            },
            "preprocessing": {
                "pixel_scale": 1.0 / 255.0,
                "ink": "bright",
                "canvas": 28,
                "digit_box": 20,
                "centre": "mass",
            },
            "labels": list(range(10)),
            "metrics": metrics,
            "guards_calibration": guards_spec["calibration"],
            "training": {"seconds": round(fitted.seconds, 1), "history": fitted.history},
            "promotion": {"promoted": decision.promote and config.promote, "reason": decision.reason},
            "library_versions": _library_versions(),
        }
        if not config.promote:
            meta["promotion"]["reason"] = f"--no-promote given ({decision.reason})"

        def write_card(version: int, folder: Path) -> None:
            (folder / layout.MODEL_CARD_FILE).write_text(model_card.render(meta, version))

        version = registry.publish(staging, meta, finalize=write_card)
    except BaseException:
        registry.discard(staging)
        raise
    promoted = decision.promote and config.promote
    if promoted:
        promoted, meta["promotion"]["reason"] = _promote(registry, version, decision, metrics, config, splits)
    return {
        "version": version,
        "promoted": promoted,
        "reason": meta["promotion"]["reason"],
        "source": splits.source,
        "sizes": splits.sizes(),
        "epochs": config.epochs,
        "train_seconds": fitted.seconds,
        "total_seconds": time.perf_counter() - started,
        "metrics": metrics,
        "path": str(registry.version_dir(version)),
    }


def _refusal_line(g: dict[str, Any]) -> str:
    fashion = "n/a" if g.get("fashion_refused") is None else f"{100 * g['fashion_refused']:.1f} %"
    return (
        f"{100 * g['test_digits_refused']:.2f} % of test digits; non-digits: noise "
        f"{100 * g['noise_refused']:.1f} %, clothing {fashion}"
    )


def print_summary(result: dict[str, Any]) -> None:
    m = result["metrics"]
    rows = [
        ("data source", f"{result['source']} {result['sizes']}"),
        ("epochs / fit time", f"{result['epochs']} / {result['train_seconds']:.1f} s"),
        ("total time", f"{result['total_seconds']:.1f} s"),
        ("test accuracy", f"{100 * m['test_accuracy']:.2f} %  (ECE {m['ece']:.4f})"),
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
