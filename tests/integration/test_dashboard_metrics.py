"""Every metric the Grafana dashboard and the alert rules query is one the running service exports.

The unit tests check the same names against service/metrics.py; this one reads a real /metrics
after real traffic, so a metric declared but never registered (or renamed on the way) fails too.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.deploy_helpers import dashboard_expressions, exported_names, rule_expressions, unknown_names
from tests.helpers import as_json_rows, real_digits


def test_dashboard_and_alerts_query_only_exported_metrics(start_server, tiny_registry: Path) -> None:
    server = start_server(registry=tiny_registry)
    digits, _ = real_digits(6)
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for digit in digits[:4]:
            assert client.post("/predict", json={"image": as_json_rows(digit)}).status_code == 200
        batch = client.post("/predict/batch", json={"images": [as_json_rows(d) for d in digits[4:]]})
        assert batch.status_code == 200
        refused = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_json", refused.text
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    exported = exported_names(metrics.text)
    assert "mnist_requests_total" in exported and "mnist_request_duration_seconds_bucket" in exported

    rule_exprs, recorded = rule_expressions()
    problems = unknown_names(dashboard_expressions() + rule_exprs, exported, recorded)
    assert not problems, f"expressions use metrics /metrics does not export: {problems}"
