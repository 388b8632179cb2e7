"""A real Prometheus server scrapes the real service and computes a latency quantile from its histogram.

Prometheus (Debian's `prometheus` package, installed by `make test`) runs on a free loopback port
with a generated config that scrapes the service every second and loads the project's alert
rules, so the rules are also proven to load in a real server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
import yaml

from loadtests.server import free_port, terminate
from tests.deploy_helpers import RULES, http_get, system_tool, wait_for
from tests.helpers import as_json_rows, real_digits

DEADLINE_S = 60.0


def prometheus_binary() -> str:
    return system_tool("prometheus")


def query(base: str, expr: str) -> list[dict]:
    status, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=5)
    if status != 200:
        return []
    payload = json.loads(body)
    return payload["data"]["result"] if payload.get("status") == "success" else []


def poll(base: str, expr: str, accept, deadline_s: float = DEADLINE_S, traffic=None) -> list[dict]:
    end = time.monotonic() + deadline_s
    result: list[dict] = []
    while time.monotonic() < end:
        if traffic:
            traffic()
        result = query(base, expr)
        if accept(result):
            return result
        time.sleep(1)
    pytest.fail(f"Prometheus never answered {expr!r} as expected within {deadline_s}s; last result: {result}")


def test_real_prometheus_scrapes_counter_and_latency_quantile(start_server, tiny_registry: Path, tmp_path: Path):
    binary = prometheus_binary()
    server = start_server(registry=tiny_registry)
    target = server.base_url.removeprefix("http://")
    shutil.copy(RULES, tmp_path / RULES.name)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [RULES.name],
        "scrape_configs": [{"job_name": "mnist-serving", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        status, _ = wait_for(f"{base}/-/ready", 200, 30, proc)
        assert status == 200, (tmp_path / "prometheus.log").read_text()[-3000:]

        digits, _ = real_digits(10)
        client = httpx.Client(base_url=server.base_url, timeout=10)
        version = client.get("/health/ready").json().get("model_version")

        def traffic() -> None:
            for digit in digits[:5]:
                response = client.post("/predict", json={"image": as_json_rows(digit)})
                assert response.status_code == 200, response.text

        traffic()
        served = str(client.post("/predict", json={"image": as_json_rows(digits[0])}).json()["model_version"])
        assert version is None or str(version) == served

        up = poll(base, 'up{job="mnist-serving"}', lambda r: bool(r) and r[0]["value"][1] == "1")
        assert up
        poll(base, 'sum(mnist_requests_total{endpoint="/predict", status="200"})', lambda r: bool(r), traffic=traffic)
        p99 = "histogram_quantile(0.99, sum by (le, model_version) (rate(mnist_request_duration_seconds_bucket[30s])))"

        def has_served_version(result: list[dict]) -> bool:
            return any(
                r["metric"].get("model_version") == served and r["value"][1] not in {"NaN", "+Inf"} for r in result
            )

        result = poll(base, p99, has_served_version, traffic=traffic)
        value = next(float(r["value"][1]) for r in result if r["metric"].get("model_version") == served)
        assert 0 < value < 10
        rules = json.loads(http_get(f"{base}/api/v1/rules")[1])["data"]["groups"]
        assert {g["name"] for g in rules} >= {"mnist-serving.alerts", "mnist-serving.recording"}
        client.close()
    finally:
        terminate(proc)
        log.close()
