"""The load test cannot rot: short headless Locust runs through ``loadtests/run.py``, as ``make loadtest`` does.

The first run lets run.py start the real service on the tiny model itself (its
start logic is part of what is tested); the second targets a service started
by the ``start_server`` fixture through ``--host`` (``LOADTEST_HOST``).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_loadtest(
    models: Path, reports: Path, *, duration: str, p99_ms: str, host: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "loadtests/run.py", "--models", str(models), "--users", "8", "--spawn-rate", "8",
        "--duration", duration, "--p99-ms", p99_ms, "--fail-ratio", "0.001", "--reports-dir", str(reports),
    ]  # fmt: skip
    if host:
        cmd += ["--host", host]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)


def test_smoke_run_passes_its_budget_and_writes_reports(tiny_registry: Path, tmp_path: Path) -> None:
    # A generous p99: this checks the pipeline end to end on a busy test machine, not the service's speed.
    proc = run_loadtest(tiny_registry, tmp_path, duration="15s", p99_ms="2000")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "LOADTEST PASS" in proc.stdout

    [html] = tmp_path.glob("*.html")
    [stats] = tmp_path.glob("*_stats.csv")
    assert html.stat().st_size > 0
    rows = {row["Name"]: row for row in csv.DictReader(stats.open(newline=""))}
    for kind in ("/predict [png upload]", "/predict [json]", "/predict/batch [json]"):
        assert int(rows[kind]["Request Count"]) > 0, f"no {kind} requests in {sorted(rows)}"
    assert int(rows["Aggregated"]["Failure Count"]) == 0, output


def test_impossible_p99_budget_fails_the_run(tiny_registry: Path, tmp_path: Path, start_server) -> None:
    service = start_server(registry=tiny_registry)
    proc = run_loadtest(tiny_registry, tmp_path / "reports", duration="5s", p99_ms="0.001", host=service.base_url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "LOADTEST FAIL" in proc.stdout
    assert list((tmp_path / "reports").glob("*.html")), "the report is written even when the budget is missed"


def test_empty_registry_asks_for_make_train(tmp_path: Path) -> None:
    proc = run_loadtest(tmp_path / "empty", tmp_path / "reports", duration="5s", p99_ms="250")
    assert proc.returncode == 2
    assert "make train" in proc.stderr
