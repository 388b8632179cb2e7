"""A real (tiny) training run through the CLI: what `make train` leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from registry import Registry, layout
from tests.conftest import ServerHandle
from tests.helpers import ROOT, TINY_TRAINING, as_json_rows, held_out_digits, publish_copy


def test_quick_training_leaves_a_complete_verified_promoted_version(tiny_registry: Path) -> None:
    registry = Registry(tiny_registry)
    version = registry.resolve()
    assert registry.aliases()[layout.PRODUCTION] == version
    meta = registry.verify(version)  # every sha256 matches, nothing unlisted
    folder = registry.version_dir(version)
    for name in (layout.ONNX_FILE, layout.KERAS_FILE, layout.GUARDS_FILE, layout.MODEL_CARD_FILE):
        assert (folder / name).is_file()
    assert (folder / layout.SAVEDMODEL_DIR / "saved_model.pb").is_file()
    assert {"confusion_matrix.png", "training_curves.png"} <= set(meta["files"])
    assert meta["data"]["source"] and len(meta["data"]["sha256"]) == 64
    assert meta["training_config"]["quick"] is True
    assert meta["input"]["name"] == "image" and meta["preprocessing"]["pixel_scale"] == pytest.approx(1 / 255)
    metrics = meta["metrics"]
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and len(metrics["per_class_accuracy"]) == 10
    assert metrics["scored_as_served"] is True
    assert set(metrics["fgsm"]) == {"0.05", "0.1", "0.2"}
    assert set(metrics["guards"]["fgsm_refused"]) == set(metrics["fgsm"])  # the card's ε 0.05 row read "n/a"
    assert metrics["parity"]["argmax_mismatches"] == 0 and metrics["parity"]["max_abs_diff_onnx"] <= 1e-4
    assert metrics["latency_us_per_image"]["batch_64"] > 0
    card = (folder / layout.MODEL_CARD_FILE).read_text()
    assert f"version {version}" in card and "FGSM" in card and "confusion_matrix.png" in card
    guards = json.loads((folder / layout.GUARDS_FILE).read_text())
    assert guards["ood"]["threshold"] > 0 and guards["adversarial"]["threshold"] > 0


def test_the_onnx_artifact_has_the_documented_signature(tiny_registry: Path) -> None:
    registry = Registry(tiny_registry)
    session = ort.InferenceSession(str(registry.version_dir(registry.resolve()) / layout.ONNX_FILE))
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert {o.name for o in session.get_outputs()} == {"probabilities", "features"}
    probs, _ = session.run(["probabilities", "features"], {"image": np.zeros((3, 28, 28, 1), np.float32)})
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_two_concurrent_trainings_publish_two_distinct_complete_versions(registry_copy: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Small runs: the race is in staging and publishing, not in how long fitting takes.
    cmd = [sys.executable, "-m", "training", "--registry", str(registry_copy), *TINY_TRAINING, "--model", "mlp"]
    runs = [
        subprocess.Popen([*cmd, "--seed", str(seed)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for seed in (1, 2)
    ]
    assert [p.wait(timeout=600) for p in runs] == [0, 0]
    registry = Registry(registry_copy)
    new = registry.versions()[-2:]
    assert len(set(new)) == 2 and len(registry.versions()) == 3
    for version in new:
        registry.verify(version)
    assert not [p for p in registry.model_dir.iterdir() if p.name.startswith(layout.STAGING_PREFIX)]


def test_a_worse_model_is_registered_but_not_promoted(registry_copy: Path) -> None:
    registry = Registry(registry_copy)
    before = registry.aliases()[layout.PRODUCTION]
    out = subprocess.run(
        [sys.executable, "-m", "training", "--registry", str(registry_copy), "--quick", "--model", "mlp",
         "--epochs", "1", "--limit", "100"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "not promoted" in out.stdout
    assert registry.aliases()[layout.PRODUCTION] == before
    assert registry.latest() == before + 1
    assert registry.metadata(before + 1)["promotion"]["verdict"] == "keep"


def _answers(base_url: str, digits: np.ndarray) -> list[dict]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        answers = []
        for start in range(0, len(digits), 250):  # under MNIST_MAX_BATCH_IMAGES
            body = {"images": [as_json_rows(d) for d in digits[start : start + 250]]}
            response = client.post("/predict/batch", json=body)
            assert response.status_code == 200, response.text
            answers += response.json()["predictions"]
    return answers


def test_the_model_card_figures_are_what_the_service_answers_for_the_same_test_digits(
    tiny_registry: Path, served: ServerHandle, start_server: Callable[..., ServerHandle]
) -> None:
    """A version's recorded accuracy and digit refusals are the service's own on its test digits sent as JSON:
    training scores digits made into inputs as the service makes them."""
    meta = Registry(tiny_registry).metadata(Registry(tiny_registry).resolve())
    x_test, y_test = held_out_digits(tiny_registry)
    refused = [a["error"]["code"] for a in _answers(served.base_url, x_test) if "error" in a]
    assert set(refused) <= {"not_a_digit", "suspected_adversarial"}
    assert len(refused) == round(meta["metrics"]["guards"]["test_digits_refused"] * len(y_test))
    unguarded = start_server(env={"MNIST_GUARDS": "false"}, registry=tiny_registry)
    digits = [a["digit"] for a in _answers(unguarded.base_url, x_test)]
    assert sum(np.asarray(digits) == y_test) == round(meta["metrics"]["test_accuracy"] * len(y_test))


def test_the_champion_is_scored_as_it_serves_with_its_own_preprocessing(registry_copy: Path) -> None:
    """The promotion gate scores production on a challenger's test digits as production serves them: the tiny
    version scores what its card recorded, and a copy that serves its digits unsoftened scores them unsoftened."""
    from training import promotion

    registry = Registry(registry_copy)
    version = registry.resolve()
    x_test, y_test = held_out_digits(registry_copy)
    recorded = registry.metadata(version)["metrics"]["test_accuracy"]
    assert promotion.champion_accuracy(registry, version, x_test, y_test) == pytest.approx(recorded, abs=1e-9)
    sharp = publish_copy(registry_copy, version, softening=0.0)
    session = ort.InferenceSession(str(registry.version_dir(sharp) / layout.ONNX_FILE))
    (probs,) = session.run(["probabilities"], {"image": (x_test / np.float32(255.0))[..., None].astype(np.float32)})
    unsoftened = float((probs.argmax(1) == y_test).mean())
    assert promotion.champion_accuracy(registry, sharp, x_test, y_test) == pytest.approx(unsoftened, abs=1e-9)
