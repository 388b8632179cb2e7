"""Limits, request ids, JSON logs and request metrics, on a fake manager."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from service.app import create_app
from service.logging_setup import REQUEST_ID, drain, json_handler
from service.settings import Settings
from tests.unit.api_fakes import FakeManager, call, rejections, scope_for

LIMIT = 2048


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model_dir=tmp_path, max_body_bytes=LIMIT), manager=FakeManager())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def code_of(response: object) -> str:
    return response.json()["error"]["code"]  # type: ignore[attr-defined]


def test_declared_length_over_the_cap_is_413(client: TestClient) -> None:
    response = client.post("/predict", content=b"x" * (LIMIT + 1), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and code_of(response) == "payload_too_large"


def test_chunked_body_over_the_cap_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"[" * 512

    response = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and code_of(response) == "payload_too_large"


def test_lying_content_length_is_counted(tmp_path: Path) -> None:
    """A direct ASGI call: declared 10 bytes, streams 5 KiB."""
    import asyncio

    app = create_app(Settings(model_dir=tmp_path, max_body_bytes=LIMIT), manager=FakeManager())
    sent: list[dict] = []
    body = [{"type": "http.request", "body": b"[" * 1024, "more_body": True} for _ in range(5)]

    async def receive() -> dict:
        return body.pop(0) if body else {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"10")],
        "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": "",
        "app": app,
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Content-Type": "text/plain"}, "unsupported_media_type"),
        ({"Content-Type": "application/xml"}, "unsupported_media_type"),
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, "unsupported_encoding"),
    ],
)
def test_content_type_and_encoding_are_allow_listed(client: TestClient, headers: dict, code: str) -> None:
    response = client.post("/predict", content=b"{}", headers=headers)
    assert response.status_code == 415 and code_of(response) == code


def test_an_encoding_is_refused_only_on_a_body_and_read_from_every_header_line(client: TestClient) -> None:
    # A GET has no body to compress: a probe or a scraper naming an encoding was refused 415 and counted as refused.
    assert client.get("/health/ready", headers={"Content-Encoding": "gzip"}).status_code == 200
    # A gzip on a second line was never read: the compressed body was parsed as JSON (400 "not valid UTF-8").
    lines = [("Content-Type", "application/json"), ("Content-Encoding", "identity"), ("Content-Encoding", "gzip")]
    response = client.post("/predict", content=b"\x1f\x8b\x08\x00", headers=lines)
    assert response.status_code == 415 and code_of(response) == "unsupported_encoding"


def test_a_transfer_coding_besides_chunked_is_refused(client: TestClient) -> None:
    """httptools takes "gzip, chunked" and undoes the chunking only: the gzip went unread into the JSON parser."""
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"gzip, chunked")]
    scope = {**scope_for("POST", "/predict", {}), "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"\x1f\x8b\x08\x00", "more_body": False}

    status, _, body = asyncio.run(call(client.app, scope, receive))
    assert status == 415 and body["error"] == {
        "code": "unsupported_encoding",
        "message": "Transfer-Encoding may only be chunked; compressed bodies are not accepted",
    }


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/health/live", headers={"X-Request-ID": "abc-123.X_y"}).headers["x-request-id"] == "abc-123.X_y"
    generated = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(generated) == 32 and generated.isalnum()
    assert len(client.get("/health/live", headers={"X-Request-ID": "a" * 129}).headers["x-request-id"]) == 32


def test_metrics_move_and_use_route_templates(client: TestClient) -> None:
    registry = REGISTRY
    labels = {"endpoint": "/models/{version}", "method": "GET", "status": "422", "protocol": "rest"}
    before = registry.get_sample_value("mnist_requests_total", labels) or 0.0
    rejected = registry.get_sample_value("mnist_rejected_inputs_total", {"reason": "unsupported_media_type"}) or 0.0
    client.get("/models/not-a-number")
    client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain"})
    assert registry.get_sample_value("mnist_requests_total", labels) == before + 1
    after = registry.get_sample_value("mnist_rejected_inputs_total", {"reason": "unsupported_media_type"})
    assert after == rejected + 1
    text = client.get("/metrics").text
    assert 'endpoint="/models/{version}"' in text and "not-a-number" not in text


def test_a_scrape_or_a_probe_is_not_counted_in_flight(client: TestClient) -> None:
    """The HPA scales on this gauge: a scrape counting itself read 1 on an idle pod."""
    for path in ("/metrics", "/health/live", "/health/ready"):
        client.get(path)
    text = client.get("/metrics").text
    assert "mnist_requests_in_flight 0.0" in text.splitlines()


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [("/openapi.json", "/openapi.json"), ("/docs", "/docs"), ("/health/live", "/health/live"), ("/ui/pad.js", "/ui")],
)
def test_every_route_the_service_answers_is_counted_under_its_own_name(
    client: TestClient, path: str, endpoint: str
) -> None:
    """FastAPI's own /openapi.json was counted and logged as "unmatched", beside requests for paths that exist
    nowhere."""
    labels = {"endpoint": endpoint, "method": "GET", "status": "200", "protocol": "rest"}
    before = REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0
    assert client.get(path).status_code == 200
    assert REGISTRY.get_sample_value("mnist_requests_total", labels) == before + 1


def json_lines(stream: io.StringIO) -> list[dict]:
    drain()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def access_lines(stream: io.StringIO) -> list[dict]:
    return [entry for entry in json_lines(stream) if entry["logger"] == "service.access"]


@pytest.fixture()
def log_stream(client: TestClient) -> Iterator[io.StringIO]:
    """What the service's JSON handler writes (stdout in production)."""
    handler = json_handler()
    assert handler is not None
    drain()
    stream = io.StringIO()
    previous = handler.writer.setStream(stream)
    try:
        yield stream
    finally:
        drain()
        handler.writer.setStream(previous)


def test_access_line_is_json_with_the_request_id(client: TestClient, log_stream: io.StringIO) -> None:
    client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain", "X-Request-ID": "req-42"})
    (line,) = access_lines(log_stream)
    assert line["request_id"] == "req-42" and line["status"] == 415 and line["route"] == "/predict"
    assert line["level"] == "info" and line["msg"] == "request" and line["method"] == "POST"
    assert line["model_version"] is None and isinstance(line["duration_ms"], float)
    assert line["ts"].endswith("Z") and line["path"] == "/predict"


def test_a_prediction_access_line_names_the_model_version(client: TestClient, log_stream: io.StringIO) -> None:
    image = [[255 if 13 <= c <= 15 and 4 <= r <= 23 else 0 for c in range(28)] for r in range(28)]
    response = client.post("/predict", json={"image": image}, headers={"X-Request-ID": "req-7"})
    assert response.status_code == 200 and response.headers["x-model-version"] == "3"
    (line,) = access_lines(log_stream)
    assert line["model_version"] == "3" and line["status"] == 200 and line["request_id"] == "req-7"


def test_access_lines_follow_the_log_level(client: TestClient, log_stream: io.StringIO) -> None:
    access = logging.getLogger("service.access")
    previous = access.level
    access.setLevel(logging.WARNING)
    try:
        client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain"})
    finally:
        access.setLevel(previous)
    client.get("/health/live")  # probes log at debug: below the default info
    assert access_lines(log_stream) == []


def test_a_record_logged_while_serving_carries_the_request_id_and_its_traceback(log_stream: io.StringIO) -> None:
    """Lines are written on the listener's thread, which does not see the request's context."""
    token = REQUEST_ID.set("req-99")
    try:
        try:
            raise ValueError("broken")
        except ValueError:
            logging.getLogger("service").exception("it failed", extra={"model_version": 4})
    finally:
        REQUEST_ID.reset(token)
    (line,) = [entry for entry in json_lines(log_stream) if entry["logger"] == "service"]
    assert line["request_id"] == "req-99" and line["level"] == "error" and line["model_version"] == 4
    assert line["msg"] == "it failed" and "ValueError: broken" in line["exc"]


@pytest.mark.parametrize("sent", [b"abc\n", b"abc\r", b"a" * 129, b"", b"ab c", b'a"b'])
def test_a_request_id_unsafe_to_log_or_echo_is_replaced(sent: bytes) -> None:
    """Ids go raw into access lines and response headers: only [A-Za-z0-9._-]{1,128}, the whole value."""
    from service.api.access import request_id_from
    from service.api.grpc_oip import request_id

    def over_grpc(value: str) -> str:  # a call's metadata, as grpc.aio hands it over
        return request_id(SimpleNamespace(invocation_metadata=lambda: (("x-request-id", value),)))

    for read in (lambda value: request_id_from([(b"x-request-id", value.encode("latin-1"))]), over_grpc):
        got = read(sent.decode("latin-1"))
        assert got != sent.decode("latin-1") and len(got) == 32
        assert read("req-42.a_b") == "req-42.a_b"


MULTIPART_START = (
    b'--B\r\nContent-Disposition: form-data; name="%s"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
)


@pytest.mark.parametrize(
    ("path", "form", "start"),
    [
        ("/predict", "application/json", b'{"image": [[0, 0'),
        ("/predict", "image/png", b"\x89PNG\r\n\x1a\n"),
        # The form parser's own errors are invalid_multipart; a hang-up in the middle of a part is not one.
        ("/predict", "multipart/form-data; boundary=B", MULTIPART_START % b"file" + b"\x89PNG\r\n\x1a\n"),
        ("/predict/batch", "multipart/form-data; boundary=B", MULTIPART_START % b"files" + b"\x89PNG\r\n\x1a\n"),
    ],
)
def test_a_client_that_leaves_mid_body_is_499_not_a_server_error(
    client: TestClient, log_stream: io.StringIO, path: str, form: str, start: bytes
) -> None:
    """A phone on a flaky network drops its upload: no 5xx for the error-ratio alert, no traceback, no latency
    sample (nothing was answered), no refused input; the access line says 499, nginx's code for a client that
    closed."""
    import asyncio

    app = client.app
    sent: list[dict] = []
    body = [{"type": "http.request", "body": start, "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict:
        return body.pop(0) if body else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(b"content-type", form.encode()), (b"content-length", b"1000")],
        "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": "",
        "app": app,
    }  # fmt: skip
    labels = {"endpoint": path, "method": "POST", "status": "499", "protocol": "rest"}
    before = REGISTRY.get_sample_value("mnist_requests_total", labels) or 0.0
    timed = {"endpoint": path, "model_version": "", "protocol": "rest"}
    timed_before = REGISTRY.get_sample_value("mnist_request_duration_seconds_count", timed) or 0.0
    refused_before = rejections()
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert sent == []
    assert REGISTRY.get_sample_value("mnist_requests_total", labels) == before + 1
    assert (REGISTRY.get_sample_value("mnist_request_duration_seconds_count", timed) or 0.0) == timed_before
    assert rejections() == refused_before
    lines = json_lines(log_stream)
    assert [(e["status"], e["level"]) for e in lines if e["logger"] == "service.access"] == [(499, "info")]
    assert not [e for e in lines if e["level"] == "error"]
