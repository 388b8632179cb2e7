"""Champion/challenger: a new version becomes production only if it is at least as good."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from registry import Registry, RegistryError, layout
from training import evaluate
from training.data import OFFLINE_SOURCE
from training.export import onnx_session, run_onnx
from training.train import served_input


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    champion_version: int | None = None
    champion_accuracy: float | None = None


def champion_accuracy(registry: Registry, version: int, x: np.ndarray, y: np.ndarray) -> float:
    """The production model scored on the challenger's test digits (uint8) as the service serves it, with its own
    preprocessing, so the comparison is fair."""
    preprocessing = registry.model_metadata(version).preprocessing
    session = onnx_session(registry.version_dir(version) / layout.ONNX_FILE)
    probs, _ = run_onnx(session, served_input(x, preprocessing))
    return float((probs.argmax(1) == y).mean())


def decide(
    registry: Registry,
    accuracy: float,
    floor: float,
    x_test: np.ndarray,
    y_test: np.ndarray,
    split: tuple[str, int] | None = None,
) -> Decision:
    """``split``: this run's data source and split seed, to check that production never trained on its test digits."""
    if accuracy < floor:
        return Decision(False, f"test accuracy {accuracy:.4f} is below the floor {floor:.4f}")
    current = registry.aliases().get(layout.PRODUCTION)
    if current is None:
        return Decision(True, "no production version yet")
    try:
        unfair = _trained_on_these_test_digits(registry, current, split) if split else None
        if unfair:
            return Decision(False, unfair, current)
        champion = champion_accuracy(registry, current, x_test, y_test)
    except (RegistryError, OSError, KeyError, ValueError) as exc:
        return Decision(True, f"production version {current} is unusable ({exc}); replacing it", current)
    if accuracy >= champion:
        return Decision(True, f"{accuracy:.4f} >= production v{current}'s {champion:.4f}", current, champion)
    return Decision(
        False, f"{accuracy:.4f} < production v{current}'s {champion:.4f} on the same test data", current, champion
    )


def _trained_on_these_test_digits(registry: Registry, version: int, split: tuple[str, int]) -> str | None:
    """Why production cannot be scored fairly on this run's test digits, or None. The offline fallback cuts its
    5,000 digits (from MNIST's training set) by the seed: another seed's training part holds most of this one's test
    digits (405 of 500 for seeds 0 and 1), and full MNIST's training set holds all of them. Production would be
    scored on digits it learnt, and a better challenger kept out. MNIST's own test set is new to every version."""
    facts = registry.model_metadata(version)
    theirs = (str(facts.data.get("source", "?")), facts.training_config.get("seed"))
    if split[0] != OFFLINE_SOURCE or theirs == split:
        return None
    return (
        f"production v{version} was trained on {theirs[0]} (split seed {theirs[1]}) and this run on {split[0]} "
        f"(split seed {split[1]}): production learnt some of this run's test digits, so the two cannot be compared "
        "and production stays (promote this version by hand if it should serve)"
    )


def production_comparison(
    registry: Registry, x_test: np.ndarray, y_test: np.ndarray, x_rob: np.ndarray, y_rob: np.ndarray
) -> dict[str, Any] | None:
    """Clean and FGSM accuracy of the current production model on this run's digits (uint8), each made into its
    input as the service does with the production version's preprocessing.

    This is how the card of an adversarially trained model shows the plain
    model beside it (and the other way round).
    """
    import keras

    version = registry.aliases().get(layout.PRODUCTION)
    if version is None:
        return None
    try:
        facts = registry.model_metadata(version)
        reference = keras.saving.load_model(registry.version_dir(version) / layout.KERAS_FILE, safe_mode=True)
    except Exception as exc:  # a broken champion only loses its comparison
        print(f"note: production v{version} not compared ({exc})")
        return None
    classifier = keras.Model(reference.inputs, reference.outputs[0])
    adversarial = evaluate.fgsm_robustness(classifier, served_input(x_rob, facts.preprocessing), y_rob)
    probs, _ = evaluate.predict(reference, served_input(x_test, facts.preprocessing))
    return {
        "version": version,
        "adversarial": facts.training_config.get("adversarial"),
        "test_accuracy": float((probs.argmax(1) == y_test).mean()),
        "fgsm": {
            eps: float((evaluate.predict(reference, x_adv)[0].argmax(1) == y_rob).mean())
            for eps, x_adv in adversarial.items()
        },
    }
