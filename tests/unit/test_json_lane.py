"""The JSON /predict lane answers exactly as the full app would, counts each request once, and hands
everything it does not take (with the body it already read) to the full app."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from service import metrics
from service.app import ServingApp, create_app
from service.errors import DeadlineExceeded, QueueFull
from service.settings import Settings
from tests.helpers import as_json_rows, synthetic_digit
from tests.unit.api_fakes import FakeManager, call, scope_for

pytestmark = pytest.mark.unit

DIGIT = as_json_rows(synthetic_digit(3))
INK = [[255] * 28 for _ in range(28)]  # the fake manager's non-digit


def bodies() -> list[tuple[str, bytes]]:
    """What clients send as JSON to /predict: plain, other layouts, and every kind of mistake."""
    compact = json.dumps({"image": DIGIT}, separators=(",", ":")).encode()
    faint = [[v / 255 for v in row] for row in DIGIT]
    return [
        ("compact", compact),
        ("json.dumps spacing", json.dumps({"image": DIGIT}).encode()),
        ("pretty", json.dumps({"image": DIGIT}, indent=2).encode()),
        ("floats", json.dumps({"image": [[float(v) for v in row] for row in DIGIT]}).encode()),
        ("trailing newline", compact + b"\n"),
        ("non-digit", json.dumps({"image": INK}).encode()),
        ("blank", json.dumps({"image": [[0] * 28] * 28}).encode()),
        ("0..1 scale", json.dumps({"image": faint}).encode()),
        ("leading zero", compact.replace(b"[0,", b"[00,", 1)),
        ("27 rows", json.dumps({"image": DIGIT[:27]}).encode()),
        ("ragged rows", compact.replace(b"],[", b",", 1).replace(b"]]", b"],[0]]")),
        ("256", compact.replace(b"[0,", b"[256,", 1)),
        ("negative", compact.replace(b"[0,", b"[-1,", 1)),
        ("NaN", compact.replace(b"[0,", b"[NaN,", 1)),
        ("extra field", compact[:-1] + b',"x":1}'),
        ("not an object", b"[1, 2, 3]"),
        ("truncated", compact[:-7]),
        ("not UTF-8", b'{"image": "\xff"}'),
        ("empty object", b"{}"),
    ]


def post(client: TestClient, body: bytes, **headers: str) -> Any:
    return client.post("/predict", content=body, headers={"Content-Type": "application/json", **headers})


@pytest.fixture()
def clients(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """The same app twice: with the lane, and with every request through the full stack."""
    with_lane = create_app(Settings(model_dir=tmp_path), manager=FakeManager())
    without = create_app(Settings(model_dir=tmp_path), manager=FakeManager())
    without.lane = None
    with (
        TestClient(with_lane, raise_server_exceptions=False) as a,
        TestClient(without, raise_server_exceptions=False) as b,
    ):
        yield a, b


@pytest.mark.parametrize(("name", "body"), bodies(), ids=[name for name, _ in bodies()])
def test_answers_match_the_full_app(clients: tuple[TestClient, TestClient], name: str, body: bytes) -> None:
    lane, full = (post(client, body, **{"X-Request-ID": "same-id"}) for client in clients)
    assert (lane.status_code, lane.content) == (full.status_code, full.content), name
    for header in ("content-type", "content-length", "x-request-id", "retry-after", "connection"):
        assert lane.headers.get(header) == full.headers.get(header), header


@pytest.mark.parametrize("error", [QueueFull("busy", retry_after_s=2), DeadlineExceeded("late")])
def test_whole_call_failures_match_the_full_app(tmp_path: Path, error: Exception) -> None:
    answers = []
    for use_lane in (True, False):
        app = create_app(Settings(model_dir=tmp_path), manager=FakeManager(fail_with=error))  # type: ignore[arg-type]
        if not use_lane:
            app.lane = None
        with TestClient(app, raise_server_exceptions=False) as client:
            response = post(client, json.dumps({"image": DIGIT}).encode())
            answers.append((response.status_code, response.content, response.headers.get("retry-after")))
    assert answers[0] == answers[1] and answers[0][0] in (503, 504)


def requests_total(status: str) -> float:
    labels = {"endpoint": "/predict", "method": "POST", "status": status}
    metrics.publish()  # as a scrape does
    return REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0


def test_every_request_is_counted_once(clients: tuple[TestClient, TestClient]) -> None:
    client, _ = clients
    before_ok, before_refused = requests_total("200"), requests_total("422")
    post(client, json.dumps({"image": DIGIT}, separators=(",", ":")).encode())  # answered by the lane
    post(client, json.dumps({"image": DIGIT}, indent=1).encode())  # handed to the full app
    post(client, json.dumps({"image": INK}).encode())  # refused by the lane
    post(client, json.dumps({"image": DIGIT[:3]}).encode())  # refused by the full app
    assert requests_total("200") == before_ok + 2
    assert requests_total("422") == before_refused + 2


# ---- what the lane takes, and what it hands over ------------------------------------------------
class FullApp:
    """Stands in for the full app: records what reaches it, body included, and answers 299."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.last_message: dict[str, Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            self.last_message = message
            body += message.get("body", b"")
            more = message["type"] == "http.request" and message.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"null"})


def receiving(*chunks: bytes, then: dict[str, Any] | None = None) -> Any:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if then is not None:
        messages[-1]["more_body"] = True
        messages.append(then)

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


def lane_of(tmp_path: Path) -> ServingApp:
    return create_app(Settings(model_dir=tmp_path), manager=FakeManager())


def run_lane(app: ServingApp, headers: dict[str, str], receive: Any, full: FullApp) -> int:
    async def direct(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert app.lane is not None
        await app.lane(scope, receive, send, full)

    status, _, _ = asyncio.run(call(direct, scope_for("POST", "/predict", headers), receive))
    return status


def json_headers(body: bytes, **extra: str) -> dict[str, str]:
    return {"content-type": "application/json", "content-length": str(len(body)), **extra}


def test_a_plain_digit_never_reaches_the_full_app(tmp_path: Path) -> None:
    body = json.dumps({"image": DIGIT}).encode()
    full = FullApp()
    assert run_lane(lane_of(tmp_path), json_headers(body), receiving(body[:100], body[100:]), full) == 200
    assert full.bodies == []


PLAIN = json.dumps({"image": DIGIT}).encode()
LENGTH = str(len(PLAIN))


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json", "transfer-encoding": "chunked"},  # no length announced
        {"content-type": "application/json", "transfer-encoding": "chunked", "content-length": LENGTH},
        {"content-type": "application/json", "content-length": LENGTH, "content-encoding": "gzip"},
        {"content-type": "application/json", "content-length": str(10 * 1024 * 1024)},  # over the cap
        {"content-type": "application/json", "content-length": f"+{LENGTH}"},
        {"content-type": "text/plain", "content-length": LENGTH},
    ],
)
def test_unusual_heads_go_to_the_full_app_untouched(tmp_path: Path, headers: dict[str, str]) -> None:
    full = FullApp()
    assert run_lane(lane_of(tmp_path), headers, receiving(PLAIN), full) == 299
    assert full.bodies == [PLAIN]


def test_bodies_it_does_not_parse_are_replayed_whole(tmp_path: Path) -> None:
    body = json.dumps({"image": DIGIT}, indent=2).encode()
    full = FullApp()
    assert run_lane(lane_of(tmp_path), json_headers(body), receiving(body[:7], body[7:]), full) == 299
    assert full.bodies == [body]


def test_a_body_longer_than_announced_goes_to_the_full_app(tmp_path: Path) -> None:
    body = json.dumps({"image": DIGIT}).encode()
    full = FullApp()
    headers = json_headers(body[:10])
    assert run_lane(lane_of(tmp_path), headers, receiving(body[:8], body[8:]), full) == 299
    assert full.bodies == [body]


def test_a_client_leaving_mid_body_is_handed_over_as_such(tmp_path: Path) -> None:
    body = json.dumps({"image": DIGIT}).encode()
    full = FullApp()
    receive = receiving(body[:50], then={"type": "http.disconnect"})
    assert run_lane(lane_of(tmp_path), json_headers(body), receive, full) == 299
    assert full.bodies == [body[:50]] and full.last_message == {"type": "http.disconnect"}


def test_answer_carries_request_id_and_the_model_version(tmp_path: Path) -> None:
    body = json.dumps({"image": DIGIT}).encode()
    app = lane_of(tmp_path)

    async def direct(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert app.lane is not None
        await app.lane(scope, receive, send, FullApp())

    scope = scope_for("POST", "/predict", json_headers(body, **{"x-request-id": "abc-1"}))
    status, headers, answer = asyncio.run(call(direct, scope, receiving(body)))
    assert status == 200 and headers[b"x-request-id"] == b"abc-1"
    assert headers[b"content-type"] == b"application/json"
    assert answer["digit"] == 7 and answer["model_version"] == 3 and len(answer["probabilities"]) == 10
    assert np.isclose(sum(answer["probabilities"]), 1.0)


def test_a_repeated_content_type_goes_to_the_full_app(tmp_path: Path) -> None:
    """The full app goes by the first Content-Type; the lane does not guess which one counts."""
    app = lane_of(tmp_path)
    full = FullApp()
    scope = scope_for("POST", "/predict", {"content-type": "text/plain", "content-length": LENGTH})
    scope["headers"].append((b"content-type", b"application/json"))

    async def direct(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert app.lane is not None
        await app.lane(scope, receive, send, full)

    status, _, _ = asyncio.run(call(direct, scope, receiving(PLAIN)))
    assert status == 299 and full.bodies == [PLAIN]


def in_flight() -> float:
    metrics.publish()  # as a scrape does
    return REGISTRY.get_sample_value("mnist_requests_in_flight") or 0.0


def test_a_slow_upload_is_in_flight_and_keeps_its_deadline(tmp_path: Path) -> None:
    """In flight from its first byte; handed over half-way, the body deadline still counts from the start."""
    app = create_app(Settings(model_dir=tmp_path, body_timeout_s=0.4), manager=FakeManager())
    seen: list[float] = []

    async def receive_slowly() -> dict[str, Any]:
        seen.append(in_flight())
        if len(seen) == 1:
            return {"type": "http.request", "body": b"{", "more_body": True}
        if len(seen) == 2:
            await asyncio.sleep(0.3)  # then more than the 10 bytes announced: handed over to the full app
            return {"type": "http.request", "body": b'"image":[[0,0,0]', "more_body": True}
        await asyncio.Event().wait()  # and then nothing, ever
        raise AssertionError("unreachable")

    before = in_flight()
    scope = scope_for("POST", "/predict", {"content-type": "application/json", "content-length": "10"})
    began = time.monotonic()
    status, headers, answer = asyncio.run(call(app, scope, receive_slowly))
    elapsed = time.monotonic() - began
    assert status == 408 and answer["error"]["code"] == "request_timeout" and headers[b"connection"] == b"close"
    assert elapsed < 0.6, f"the deadline restarted at the hand-over ({elapsed:.2f} s)"
    assert seen[0] == before + 1 and in_flight() == before
