"""Alert rules and scrape config checked by promtool (Debian's `prometheus` package).

`make test` installs it (system-deps target). In CI a missing promtool fails these tests, so a
broken install can never turn them green by skipping; elsewhere they skip and say how to fix it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy_helpers import system_tool

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"


def promtool() -> str:
    return system_tool("promtool")


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_check_rules() -> None:
    result = run_promtool("check", "rules", str(PROM / "mnist-alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests, "no promtool test files"
    result = run_promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_config() -> None:
    # Run from the config's folder: rule_files are relative to it, as in docker-compose.
    result = run_promtool("check", "config", "prometheus.yml", cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
