"""Every registered architecture end to end: trained in --quick mode through the CLI (export, parity, ONNX, the
guards' calibration, registration), then loaded by a real service process that answers with it. The runs use
the optimiser flags, so the same trainings show each flag landing in the metadata and the model card."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from registry import Registry, layout
from tests.conftest import ServerHandle
from tests.helpers import ROOT, TINY_TRAINING, as_json_rows, real_digits, run_training
from training.architectures import ARCHITECTURES, architecture

# Each architecture trains under another recipe, so every optimiser and schedule runs end to end once; an
# architecture added later runs with the defaults until it is given a line here.
RECIPES: dict[str, tuple[str, ...]] = {
    "mlp": ("--optimizer", "sgd", "--learning-rate", "0.05", "--momentum", "0.9", "--nesterov", "--batch-size", "128",
            "--epochs", "5", "--limit", "2000", "--lr-schedule", "constant", "--early-stopping", "2",
            "--label-smoothing", "0.1", "--no-promote"),
    # Batch normalisation's moving statistics need a few hundred steps before the exported graph is good.
    "cnn_bn": ("--optimizer", "rmsprop", "--momentum", "0.5", "--lr-schedule", "step", "--epochs", "3",
               "--limit", "2000"),
}  # fmt: skip
DIGITS, LABELS = real_digits(10)


@pytest.fixture(scope="module")
def trained(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, int]]:
    """``trained(name)`` -> (registry, version) of a quick run of that architecture, trained once per module.

    The session's tiny registry already holds a quick run of the default architecture; it is reused for that one.
    """
    cache: dict[str, tuple[Path, int]] = {}
    tiny = Registry(tiny_registry)
    cache[tiny.model_metadata(tiny.resolve()).training_config["model"]] = (tiny_registry, tiny.resolve())

    def train(name: str) -> tuple[Path, int]:
        if name not in cache:
            root = tmp_path_factory.mktemp(f"registry-{name}")
            logs = root / "tensorboard"
            out = run_training("--registry", str(root), "--model", name, *TINY_TRAINING, *RECIPES.get(name, ()),
                               "--tensorboard", str(logs))  # fmt: skip
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
            cache[name] = (root, Registry(root).latest() or 0)
        return cache[name]

    return train


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_trains_exports_and_is_served(name: str, trained: Callable, start_server) -> None:
    root, version = trained(name)
    registry = Registry(root)
    meta = registry.model_metadata(version)  # every checksum verified
    metrics = meta.metrics
    assert meta.training_config["model"] == name and meta.training_config["quick"] is True
    assert metrics["parity"]["argmax_mismatches"] == 0 and metrics["parity"]["max_abs_diff_onnx"] <= 1e-4
    assert metrics["test_accuracy"] > 0.3 and metrics["test_loss"] > 0  # better than chance: it learnt
    guards = json.loads((registry.version_dir(version) / layout.GUARDS_FILE).read_text())
    features = meta.outputs[layout.OUTPUT_FEATURES].shape[-1]  # type: ignore[index]
    assert len(guards["ood"]["class_means"][0]) == features and guards["adversarial"]["threshold"] > 0
    summary = re.search(r"([\d,]+) parameters", ARCHITECTURES[name].summary)
    assert summary is None or int(summary.group(1).replace(",", "")) == meta.parameters, "summary's count is stale"

    server: ServerHandle = start_server(registry=root, env={"MNIST_MODEL_REF": str(version)})
    with httpx.Client(base_url=server.base_url, timeout=20) as client:
        models = client.get("/models").json()
        batch = client.post("/predict/batch", json={"images": [as_json_rows(d) for d in DIGITS]})
    assert models["model_version"] == version and models["backend"] == "onnx"
    assert batch.status_code == 200, batch.text
    body = batch.json()
    answered = [p for p in body["predictions"] if "digit" in p]
    assert body["model_version"] == version and len(body["predictions"]) == len(DIGITS) and answered, body
    assert all(0 <= p["digit"] <= 9 and abs(sum(p["probabilities"]) - 1) < 1e-3 for p in answered)


def test_the_optimiser_flags_are_in_the_metadata_and_the_card(trained: Callable) -> None:
    root, version = trained("mlp")
    registry = Registry(root)
    config = registry.metadata(version)["training_config"]
    asked = {
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "batch_size": 128,
        "epochs": 5,
        "lr_schedule": "constant",
        "early_stopping": 2,
        "label_smoothing": 0.1,
        "promote": False,
    }
    assert {key: config[key] for key in asked} == asked
    assert layout.PRODUCTION not in registry.aliases()  # --no-promote
    meta = registry.model_metadata(version)
    assert meta.training["epochs_run"] <= 5 and 1 <= meta.training["best_epoch"] <= meta.training["epochs_run"]
    card = (registry.version_dir(version) / layout.MODEL_CARD_FILE).read_text()
    assert "sgd lr 0.05 momentum 0.9 (Nesterov), constant learning rate, 5 epochs of batch 128" in card
    assert f"Test loss (mean cross-entropy of the true digit) {meta.metrics['test_loss']:.4f}" in card


def test_tensorboard_logs_are_written_for_training_and_validation(trained: Callable) -> None:
    root, _ = trained("mlp")
    for side in ("train", "validation"):
        events = list((root / "tensorboard" / side).glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0, side


def test_the_architecture_example_in_the_docs_builds_as_its_summary_says() -> None:
    """The ~15-line example of docs/training.md registers, builds and has the parameters its summary gives."""
    from training.models import build

    doc = (ROOT / "docs" / "training.md").read_text()
    example = re.search(r"```python\n(.*?)```", doc, re.S)
    assert example is not None and len(example.group(1).splitlines()) <= 15
    before = set(ARCHITECTURES)
    try:
        exec(example.group(1), {"architecture": architecture, "KerasTensor": object})
        (name,) = set(ARCHITECTURES) - before
        summary = re.search(r"([\d,]+) parameters", ARCHITECTURES[name].summary)
        assert summary is not None and int(summary.group(1).replace(",", "")) == build(name).count_params()
    finally:
        for added in set(ARCHITECTURES) - before:
            del ARCHITECTURES[added]
