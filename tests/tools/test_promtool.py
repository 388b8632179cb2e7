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


def test_the_dashboards_load_counts_see_a_new_version_and_a_first_refusal(tmp_path: Path) -> None:
    """Counters labelled by version or reason have no series until their first event, which creates it at 1: the
    "Model loads / load failures (1h)" stat read 0 after a hot swap and after a refused version."""
    import json

    from tests.deploy_helpers import DASHBOARD

    (panel,) = [p for p in json.loads(DASHBOARD.read_text())["panels"] if "mnist_model_loads_total" in str(p)]
    loads, failures = (target["expr"] for target in panel["targets"])
    rules = tmp_path / "empty-rules.yml"
    rules.write_text("groups: []\n")
    cases = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # A replica up for two hours: version 1 since its start, version 2 swapped in at 70 min, a version
                # refused at 75 min.
                "input_series": [
                    {"series": 'mnist_model_loads_total{instance="a", model_version="1"}', "values": "1x120"},
                    {"series": 'mnist_model_loads_total{instance="a", model_version="2"}', "values": "_x70 1x50"},
                    {
                        "series": 'mnist_model_load_failures_total{instance="a", reason="verification"}',
                        "values": "_x75 1x45",
                    },
                ],
                "promql_expr_test": [
                    {"expr": loads, "eval_time": "100m", "exp_samples": [{"labels": "{}", "value": 1}]},
                    {"expr": failures, "eval_time": "100m", "exp_samples": [{"labels": "{}", "value": 1}]},
                ],
            }
        ],
    }
    test_file = tmp_path / "dashboard-test.yml"
    test_file.write_text(json.dumps(cases))  # JSON is YAML
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
