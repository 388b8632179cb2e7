"""The Grafana dashboard: JSON Grafana imports, the panels operators need, known metric names."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from service.metrics import ALL_METRIC_NAMES
from tests.deploy_helpers import DASHBOARD, dashboard_expressions, rule_expressions, unknown_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"

# Panel title fragment -> a metric its queries must use.
REQUIRED_PANELS = {
    "request rate": "mnist_requests_total",
    "error ratio": "mnist_requests_total",
    "p50 / p95 / p99": "mnist_request_duration_seconds_bucket",
    "queue wait": "mnist_queue_wait_seconds_bucket",
    "batch size": "mnist_batch_size_bucket",
    "inference time": "mnist_inference_duration_seconds_bucket",
    "predictions by digit": "mnist_predictions_total",
    "refused inputs": "mnist_rejected_inputs_total",
    "model version": "mnist_model_info",
}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_is_importable_json() -> None:
    dashboard = load()
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos", "targets"} <= panel.keys(), panel.get("title")
        assert panel["datasource"]["uid"] == "${datasource}", "panels follow the data source variable"
        assert all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"


def test_required_panels_present() -> None:
    panels = {p["title"].lower(): " ".join(t["expr"] for t in p["targets"]) for p in load()["panels"]}
    for fragment, metric in REQUIRED_PANELS.items():
        matching = [exprs for title, exprs in panels.items() if fragment in title]
        assert matching, f"no panel titled like {fragment!r}"
        assert any(metric in exprs for exprs in matching), f"{fragment!r} panel does not query {metric}"


def test_latency_panel_shows_three_quantiles() -> None:
    panel = next(p for p in load()["panels"] if "p50 / p95 / p99" in p["title"])
    exprs = " ".join(t["expr"] for t in panel["targets"])
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}," in exprs


def test_dashboard_uses_only_metrics_the_service_defines() -> None:
    # Static twin of tests/integration/test_dashboard_metrics.py, against service/metrics.py.
    _, recorded = rule_expressions()
    assert not unknown_names(dashboard_expressions(), set(ALL_METRIC_NAMES), recorded)


def test_provisioning_points_at_the_dashboard() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mnist.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.startswith("./deploy/grafana/dashboard.json:" + path) for m in mounts)
