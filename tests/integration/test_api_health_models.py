"""Readiness, /models and /metrics against a real process and the real tiny model."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, ServerHandle
from tests.helpers import as_json_rows, raw_http, real_digits


def sample(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_not_ready_until_a_version_appears(start_server, tiny_registry: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-registry"
    empty.mkdir()
    server = start_server({"MNIST_POLL_INTERVAL_S": "0.2"}, registry=empty, wait_ready=False)
    assert httpx.get(server.base_url + "/health/live").status_code == 200
    ready = httpx.get(server.base_url + "/health/ready")
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["code"] == "model_not_ready" and error["message"]
    predict = httpx.post(server.base_url + "/predict", json={"image": as_json_rows(real_digits(1)[0][0])})
    assert predict.status_code == 503 and predict.json()["error"]["code"] == "model_not_ready"

    # Publish the way the registry does: the whole folder appears at once, by rename.
    staging = tmp_path / "staging"
    shutil.copytree(tiny_registry / "mnist", staging)
    os.rename(staging, empty / "mnist")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = httpx.get(server.base_url + "/health/ready")
        if ready.status_code == 200:
            break
        time.sleep(0.1)
    assert ready.status_code == 200, server.logs()[-2000:]
    body = ready.json()
    assert body["status"] == "ready" and isinstance(body["model_version"], int) and body["device"] in {"cpu", "cuda"}


def test_start_to_ready_is_fast_and_without_tensorflow(start_server, tiny_registry: Path) -> None:
    began = time.monotonic()
    server = start_server(registry=tiny_registry)
    elapsed = time.monotonic() - began
    # The acceptance figure is 2 s; the margin covers a loaded 2-core CI machine (the figure is printed).
    print(f"start to ready: {elapsed:.2f} s")
    assert elapsed <= 3.0
    assert "tensorflow" not in server.logs().lower()


def test_models_and_model_metadata(served: ServerHandle) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        models = client.get("/models").json()
        version = models["model_version"]
        assert version in [v["version"] for v in models["versions"]]
        assert models["backend"] == "onnx" and models["device"] in {"cpu", "cuda"} and "last_load_error" in models
        meta = client.get(f"/models/{version}")
        assert meta.status_code == 200 and meta.json()["version"] == version and "files" in meta.json()
        missing = client.get("/models/999999")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"
        for bad in ("abc", "0", "1e3", "%2e%2e%2fetc"):
            response = client.get(f"/models/{bad}")
            assert response.status_code in (404, 422), bad
            assert response.json()["error"]["code"] in {"invalid_version", "not_found"}
    # Sent literally: a client resolves "/models/.." to "/" (the pad's page) before sending it.
    dots = raw_http(served.base_url, "GET /models/.. HTTP/1.1\r\nHost: test")
    assert dots.status == 422 and dots.json()["error"]["code"] == "invalid_version"


def test_metrics_are_present_and_moving(served: ServerHandle) -> None:
    digits, _ = real_digits(4)
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        before = client.get("/metrics").text
        for digit in digits:
            client.post("/predict", json={"image": as_json_rows(digit)})
        client.post("/predict/batch", json={"images": [as_json_rows(d) for d in digits]})
        client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain"})
        after = client.get("/metrics").text
    requests = {"endpoint": "/predict", "method": "POST", "status": "200"}
    assert sample(after, "mnist_requests_total", **requests) >= sample(before, "mnist_requests_total", **requests) + 1
    assert sample(after, "mnist_batch_size_count") > sample(before, "mnist_batch_size_count")
    assert sample(after, "mnist_request_duration_seconds_count", endpoint="/predict/batch") >= 1
    assert sample(after, "mnist_rejected_inputs_total", reason="unsupported_media_type") >= 1
    for name in ("mnist_inference_duration_seconds_bucket", "mnist_queue_wait_seconds_bucket", "mnist_model_info"):
        assert name in after
    # Labels carry templates and codes, never request data.
    assert not re.search(r'endpoint="/models/\d', after)


def test_bad_setting_exits_2_naming_the_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "MNIST_MAX_BATCH_SIZE": "zero"}
    done = subprocess.run(
        [sys.executable, "-m", "service", "--port", "8000"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "MNIST_MAX_BATCH_SIZE" in done.stderr and "Traceback" not in done.stderr
    bad_port = subprocess.run(
        [sys.executable, "-m", "service", "--port", "99999"], cwd=ROOT, env=env | {"MNIST_MAX_BATCH_SIZE": "8"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad_port.returncode == 2 and "MNIST_PORT" in bad_port.stderr


def test_serving_path_never_imports_tensorflow() -> None:
    code = (
        "import sys, service.__main__, service.app, service.inference.model_manager; print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_cuda_without_a_gpu_exits_2_with_advice() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA")
    env = {"PATH": "/usr/bin:/bin", "MNIST_DEVICE": "cuda"}
    done = subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "MNIST_DEVICE" in done.stderr and "Traceback" not in done.stderr


def test_a_killed_workers_gauges_leave_the_sums(start_server, tiny_registry: Path) -> None:
    """Two workers, uploads in flight in both, one killed: once the clients are gone /metrics counts nothing in
    flight and one model series per live worker, as docs/operations.md says (the HPA reads in-flight)."""
    import psutil

    server = start_server({"MNIST_WORKERS": "2", "MNIST_POLL_INTERVAL_S": "0"}, registry=tiny_registry)
    port = int(server.base_url.rsplit(":", 1)[1])
    head = "POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
    uploads = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
    try:
        for sock in uploads:
            sock.sendall(head.encode() + b"\x89PNG\r\n\x1a\n")  # and the rest never comes
        metrics = lambda: httpx.get(f"{server.base_url}/metrics", timeout=5).text  # noqa: E731
        deadline = time.monotonic() + 10
        # The uploads alone: the scrape itself is not counted (it read 9, and 1 on an idle pod).
        while sample(metrics(), "mnist_requests_in_flight") < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sample(metrics(), "mnist_requests_in_flight") == 8
        workers = psutil.Process(server.process.pid).children()
        busy = next(w for w in workers if any(c.status == psutil.CONN_ESTABLISHED for c in w.connections("tcp")))
        busy.kill()
    finally:
        for sock in uploads:
            sock.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = metrics()
        models = [line for line in text.splitlines() if line.startswith("mnist_model_info{")]
        if sample(text, "mnist_requests_in_flight") == 0 and len(models) == 2:
            break
        time.sleep(0.2)
    assert sample(text, "mnist_requests_in_flight") == 0, text
    assert len(models) == 2 and all(line.endswith(" 1.0") for line in models), models
    assert busy.pid not in {w.pid for w in psutil.Process(server.process.pid).children()}
