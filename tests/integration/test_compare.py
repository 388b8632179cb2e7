"""`python -m training compare`: five runs on one split, a table, a Markdown report with learning curves, and
nothing registered unless asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from registry import Registry
from tests.helpers import ROOT, training_env
from training.compare import CURVES_NAME, REPORT_NAME, RUNS


def test_compare_prints_the_table_and_writes_the_report_without_registering(tmp_path: Path) -> None:
    registry, out = tmp_path / "registry", tmp_path / "reports"
    args = ["--epochs", "1", "--limit", "300", "--quick", "--out", str(out), "--registry", str(registry)]
    done = subprocess.run(
        [sys.executable, "-m", "training", "compare", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=training_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| run | recipe | test loss | test accuracy | epochs | seconds | µs / image")
    assert [row.split(" | ")[0].lstrip("| ") for row in table[2:]] == [label for label, _ in RUNS]
    assert "sgd lr 0.01 momentum 0.9 (Nesterov)" in done.stdout
    for i in range(1, len(RUNS) + 1):
        assert f"[fit] run {i} of {len(RUNS)}" in done.stdout  # a line per run as it starts
    report = (out / REPORT_NAME).read_text()
    assert "\n".join(table) in report and f"![learning curves]({CURVES_NAME})" in report
    assert (out / CURVES_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Registry(registry).versions() == []
    # The command that remakes it, and the data the runs trained on (it said --epochs and --seed alone, and the
    # whole split's size and checksum while every run trained on --limit's 300 digits).
    assert f"by `python -m training compare {' '.join(args)}`" in report
    assert ", train 300, " in report


def test_compare_refuses_bad_flags_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "training", "compare", "--epochs", "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "positive integer" in done.stderr


def test_compare_register_checks_the_registry_before_the_first_fit(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    args = ["--epochs", "1", "--limit", "300", "--quick", "--register", "--registry", str(tmp_path / "a-file")]
    done = subprocess.run(
        [sys.executable, "-m", "training", "compare", *args, "--out", str(tmp_path / "reports")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=training_env(),
    )  # fmt: skip
    assert done.returncode == 1 and "[fit]" not in done.stdout, done.stdout[-2000:]
    assert "during the registry check; nothing was registered" in done.stderr and "Traceback" not in done.stderr
