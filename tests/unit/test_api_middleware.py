"""Limits, request ids, JSON logs and request metrics, on a fake manager."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from service import metrics
from service.app import create_app
from service.logging_setup import REQUEST_ID, AccessLog, JsonLineHandler, request_fields
from service.settings import Settings
from tests.unit.api_fakes import FakeManager

pytestmark = pytest.mark.unit

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


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/health/live", headers={"X-Request-ID": "abc-123.X_y"}).headers["x-request-id"] == "abc-123.X_y"
    generated = client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(generated) == 32 and generated.isalnum()
    assert len(client.get("/health/live", headers={"X-Request-ID": "a" * 129}).headers["x-request-id"]) == 32


def test_metrics_move_and_use_route_templates(client: TestClient) -> None:
    registry = REGISTRY
    labels = {"endpoint": "/models/{version}", "method": "GET", "status": "422"}
    metrics.publish()
    before = registry.get_sample_value("mnist_requests_total", labels) or 0.0
    rejected = registry.get_sample_value("mnist_rejected_inputs_total", {"reason": "unsupported_media_type"}) or 0.0
    client.get("/models/not-a-number")
    client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain"})
    metrics.publish()  # what a scrape does first: per-request counts are tallied until then
    assert registry.get_sample_value("mnist_requests_total", labels) == before + 1
    after = registry.get_sample_value("mnist_rejected_inputs_total", {"reason": "unsupported_media_type"})
    assert after == rejected + 1
    text = client.get("/metrics").text
    assert 'endpoint="/models/{version}"' in text and "not-a-number" not in text


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture()
def log_stream() -> Iterator[io.StringIO]:
    """What the service's JSON handler writes (stdout in production)."""
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, JsonLineHandler))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def test_access_line_is_json_with_the_request_id(client: TestClient, log_stream: io.StringIO) -> None:
    client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain", "X-Request-ID": "req-42"})
    AccessLog.flush()
    (line,) = access_lines(log_stream)
    assert line["request_id"] == "req-42" and line["status"] == 415 and line["route"] == "/predict"
    assert line["level"] == "info" and line["msg"] == "request" and line["method"] == "POST"
    assert {"ts", "path", "duration_ms", "model_version"} <= set(line)


def test_access_lines_follow_the_log_level(client: TestClient, log_stream: io.StringIO) -> None:
    access = logging.getLogger("service.access")
    previous = access.level
    access.setLevel(logging.WARNING)
    try:
        client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain"})
    finally:
        access.setLevel(previous)
    client.get("/health/live")  # probes log at debug: below the default info
    AccessLog.flush()
    assert access_lines(log_stream) == []


@pytest.mark.parametrize(
    ("method", "path", "route", "status", "version", "request_id"),
    [
        ("POST", "/predict", "/predict", 200, "3", "req-42"),
        ("GET", "/models/7", "/models/{version}", 404, "", None),
        ("POST", '/odd "path" \\ é\n' + "x" * 300, "unmatched", 415, "", "abc"),
    ],
)
def test_the_fast_access_line_is_the_generic_line_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    route: str,
    status: int,
    version: str,
    request_id: str | None,
) -> None:
    """AccessLog.request keeps its repeating parts pre-encoded; what it writes must not differ from write()."""
    stream = io.StringIO()
    handler = JsonLineHandler(stream)
    monkeypatch.setattr("service.logging_setup._json_handler", lambda: handler)
    monkeypatch.setattr("service.logging_setup.time.time", lambda: 1_700_000_000.25)
    log = AccessLog("service.access")
    token = REQUEST_ID.set(request_id)
    try:
        for _ in range(2):  # the second line comes from the kept parts
            log.request(logging.INFO, method, path, route, status, 0.0123456, version)
        log.write(logging.INFO, request_fields(method, path, route, status, 0.0123456, version))
    finally:
        REQUEST_ID.reset(token)
    handler.flush()
    first, again, generic = stream.getvalue().splitlines()
    assert first == again == generic
    assert json.loads(first)["path"] == path[:200]


def access_lines(stream: io.StringIO) -> list[dict]:
    return [entry for entry in json_lines(stream) if entry["logger"] == "service.access"]


@pytest.fixture()
def no_timed_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's once-a-second flush, out of the way (requested before the app starts)."""
    monkeypatch.setattr(AccessLog, "FLUSH_EVERY_S", 3600.0)


def test_access_lines_wait_for_a_flush_and_keep_their_order(
    no_timed_flush: None, client: TestClient, log_stream: io.StringIO
) -> None:
    """Buffered, an access line is written by the next flush or before the next other record, in order."""
    client.post("/predict", content=b"{}", headers={"Content-Type": "text/plain", "X-Request-ID": "first"})
    assert access_lines(log_stream) == []
    logging.getLogger("service").warning("after the request")
    loggers = [entry["logger"] for entry in json_lines(log_stream)]
    assert loggers.index("service.access") < loggers.index("service")


def test_a_full_access_buffer_is_written_without_waiting() -> None:
    stream = io.StringIO()
    handler = JsonLineHandler(stream)
    for i in range(handler.MAX_PENDING - 1):
        handler.add_line(f"{i}\n")
    assert stream.getvalue() == ""
    handler.add_line("last\n")
    assert stream.getvalue().splitlines() == [*map(str, range(handler.MAX_PENDING - 1)), "last"]


class FlakyStream(io.StringIO):
    """A stream whose next ``failures`` writes raise, as a closed pipe would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write(self, text: str) -> int:
        if self.failures:
            self.failures -= 1
            raise BrokenPipeError("stdout is gone")
        return super().write(text)


def test_a_failed_write_loses_no_access_line_and_never_reaches_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging, "raiseExceptions", False)  # handleError's report to stderr, off for the test
    stream = FlakyStream(failures=1)
    handler = JsonLineHandler(stream)
    handler.add_line("one\n")
    with pytest.raises(BrokenPipeError):
        handler.flush()  # as StreamHandler.flush: the caller (the service's flush task) decides
    handler.add_line("two\n")
    logging.getLogger("isolated").addHandler(handler)
    try:
        stream.failures = 1
        handler.handle(logging.makeLogRecord({"msg": "a record", "name": "isolated"}))  # reported, not raised
    finally:
        logging.getLogger("isolated").removeHandler(handler)
    for _ in range(handler.MAX_PENDING):
        handler.add_line("more\n")  # the full buffer writes itself: never raises into a request
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert lines.count("one") == lines.count("two") == lines.count("a record") == 1
    assert lines.count("more") == handler.MAX_PENDING and len(lines) == handler.MAX_PENDING + 3


@pytest.mark.parametrize("sent", [b"abc\n", b"abc\r", b"a" * 129, b"", b"ab c", b'a"b'])
def test_a_request_id_unsafe_to_log_or_echo_is_replaced(sent: bytes) -> None:
    """Ids go raw into access lines and response headers: only [A-Za-z0-9._-]{1,128}, the whole value."""
    from service.api.access import request_id_from

    got = request_id_from([(b"x-request-id", sent)])
    assert got != sent.decode("latin-1") and len(got) == 32
    assert request_id_from([(b"x-request-id", b"req-42.a_b")]) == "req-42.a_b"
