"""The alert rules and scrape config, read as YAML: the required alerts exist and are tested, and they use
only metrics the service defines. promtool checks them in tests/tools/test_promtool.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from service.metrics import ALL_METRIC_NAMES
from tests.deploy_helpers import rule_expressions, unknown_names

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"

REQUIRED_ALERTS = {
    "MnistServiceDown",
    "MnistServiceAbsent",
    "MnistHighErrorRatio",
    "MnistP99LatencyHigh",
    "MnistQueueNearFull",
    "MnistSheddingLoad",
    "MnistGuardRefusalsRising",
    "MnistPredictedDigitShift",
    "MnistModelLoadFailures",
}


def test_required_alerts_exist_and_are_tested() -> None:
    groups = yaml.safe_load((PROM / "mnist-alerts.yml").read_text())["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert alerts >= REQUIRED_ALERTS
    tested: dict[str, set[bool]] = {}
    for path in (PROM / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                tested.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for alert in alerts:
        assert tested.get(alert) == {True, False}, f"{alert} needs a firing and a silent promtool case"


def test_alerts_carry_severity_and_summary() -> None:
    groups = yaml.safe_load((PROM / "mnist-alerts.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rules_use_only_metrics_the_service_defines() -> None:
    # Static twin of tests/integration/test_dashboard_metrics.py, against service/metrics.py.
    exprs, recorded = rule_expressions()
    assert not unknown_names(exprs, set(ALL_METRIC_NAMES), recorded)


def test_scrape_job_matches_the_alerts() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert "mnist-serving" in jobs
    assert "mnist-alerts.yml" in config["rule_files"]
