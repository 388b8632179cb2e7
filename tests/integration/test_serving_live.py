"""A real uvicorn process under load: batching, hot swap, a refused broken version, both backends."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from registry import Registry, layout
from registry.files import write_json_atomic
from tests.conftest import ServerHandle
from tests.helpers import as_json_rows, real_digits


def _answered_digits(base_url: str, n: int = 8) -> list[dict]:
    """JSON bodies of real digits this model answers with 200 (the guards may refuse a few)."""
    images, _ = real_digits(40, seed=3)
    bodies = [{"image": as_json_rows(img)} for img in images]
    kept = [b for b in bodies if httpx.post(base_url + "/predict", json=b, timeout=10).status_code == 200]
    assert len(kept) >= n // 2, "the tiny model refuses most real digits"
    return kept[:n]


def _republish(registry: Registry, version: int) -> int:
    """A new version with the same model files, published the normal way."""
    staging = registry.new_staging_dir()
    source = registry.version_dir(version)
    for item in source.iterdir():
        if item.name == layout.METADATA_FILE:
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
    meta = {k: v for k, v in registry.metadata(version).items() if k not in ("version", "files")}
    return registry.publish(staging, meta)


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*{re.escape(labels)}[^}}]*\}})? (\S+)$", re.M)
    return sum(float(m.group(2)) for m in pattern.finditer(text))


def test_concurrent_requests_are_batched(start_server, tiny_registry: Path) -> None:
    server = start_server({"MNIST_MAX_BATCH_DELAY_MS": "5"}, registry=tiny_registry)
    bodies = _answered_digits(server.base_url)
    with httpx.Client(base_url=server.base_url, timeout=30, limits=httpx.Limits(max_connections=64)) as client:

        def send(i: int) -> int:
            return client.post("/predict", json=bodies[i % len(bodies)]).status_code

        with ThreadPoolExecutor(64) as pool:
            statuses = list(pool.map(send, range(640)))
        metrics = client.get("/metrics").text
    assert Counter(statuses) == {200: 640}
    total = _metric(metrics, "mnist_batch_size_count")
    single = _metric(metrics, "mnist_batch_size_bucket", 'le="1.0"')
    assert "mnist_batch_size_bucket{" in metrics
    assert total > 0 and single < total, "every model call held one image: no batching under 64 clients"


def test_hot_swap_under_steady_load_loses_no_request(start_server, registry_copy: Path) -> None:
    registry = Registry(registry_copy)
    old = registry.resolve()
    server = start_server({"MNIST_POLL_INTERVAL_S": "0.2"}, registry=registry_copy)
    bodies = _answered_digits(server.base_url)
    seen: Counter[tuple[int, int | None]] = Counter()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                response = client.post("/predict", json=bodies[i % len(bodies)])
                version = response.json().get("model_version") if response.status_code == 200 else None
                seen[(response.status_code, version)] += 1
                i += 1

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        new = _republish(registry, old)
        registry.promote(new, reason="hot swap test")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(v == new for _, v in seen):
            time.sleep(0.1)
        time.sleep(1.0)  # keep the load on after the swap
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    statuses = Counter(status for status, _ in seen.elements())
    assert statuses == {200: statuses[200]}, f"failed requests during the swap: {dict(seen)}"
    assert seen[(200, old)] > 0 and seen[(200, new)] > 0


def test_a_broken_new_version_is_refused_and_the_old_keeps_serving(start_server, registry_copy: Path) -> None:
    registry = Registry(registry_copy)
    old = registry.resolve()
    server = start_server({"MNIST_POLL_INTERVAL_S": "0.2"}, registry=registry_copy)
    body = _answered_digits(server.base_url, n=1)[0]
    new = _republish(registry, old)
    onnx = registry.version_dir(new) / layout.ONNX_FILE
    onnx.write_bytes(onnx.read_bytes()[:-16] + b"\x00" * 16)  # damaged after publishing
    # Point production at it behind the registry's back (promote() itself would refuse it).
    state = {"aliases": {layout.PRODUCTION: new}, "history": registry.history()}
    write_json_atomic(registry.model_dir / layout.ALIASES_FILE, state)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        deadline = time.monotonic() + 20
        status: dict = {}
        while time.monotonic() < deadline:
            status = client.get("/models").json()
            if (status.get("last_load_error") or {}).get("version") == new:
                break
            time.sleep(0.1)
        assert (status.get("last_load_error") or {}).get("version") == new, status
        answer = client.post("/predict", json=body)
        assert answer.status_code == 200 and answer.json()["model_version"] == old
        assert client.get("/health/ready").status_code == 200
        assert _metric(client.get("/metrics").text, "mnist_model_load_failures_total") >= 1


def test_onnx_and_savedmodel_servers_give_the_same_answers(served: ServerHandle, start_server, tiny_registry) -> None:
    savedmodel = start_server({"MNIST_BACKEND": "savedmodel"}, registry=tiny_registry, timeout=180)
    images, _ = real_digits(12, seed=5)
    compared = 0
    for image in images:
        body = {"image": as_json_rows(image)}
        a = httpx.post(served.base_url + "/predict", json=body, timeout=30)
        b = httpx.post(savedmodel.base_url + "/predict", json=body, timeout=30)
        assert a.status_code == b.status_code
        if a.status_code == 200:
            compared += 1
            assert a.json()["digit"] == b.json()["digit"]
            assert np.allclose(a.json()["probabilities"], b.json()["probabilities"], atol=1e-4)
    assert compared >= 6
    assert httpx.get(savedmodel.base_url + "/health/ready").json()["backend"] == "savedmodel"
