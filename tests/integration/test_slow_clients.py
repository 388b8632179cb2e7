"""Slow clients on the real server: a trickled or stalled body gets 408 and a closed connection, in time,
while other clients are served. Raw sockets, since an HTTP client library will not stall on purpose."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerHandle, running_server
from tests.helpers import RawReply, as_json_rows, raw_http, real_digits

BODY_TIMEOUT_S = 1.0
# The answer must come soon after the deadline; generous for a loaded 2-core CI machine.
ANSWER_WITHIN_S = BODY_TIMEOUT_S + 3.0


@pytest.fixture(scope="module")
def slow_server(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(
        tmp_path_factory.mktemp("slow"), {"MNIST_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}, registry=tiny_registry
    ) as handle:
        yield handle


MULTIPART_START = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'


def head(content_type: str, length: int, path: str = "/predict") -> str:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {length}"


def trickle(total_s: float, start: bytes = b'{"image": [', every_s: float = 0.2) -> Iterator[bytes]:
    """A valid start, then one byte at a time: defeats any idle timeout, only a whole-body deadline stops it."""
    began = time.monotonic()
    yield start
    while time.monotonic() - began < total_s:
        time.sleep(every_s)
        yield b"0"


def assert_timed_out(reply: RawReply) -> None:
    assert reply.status == 408, reply
    assert reply.json() == {"error": {"code": "request_timeout", "message": reply.json()["error"]["message"]}}, (
        reply.body
    )
    assert reply.headers.get("connection") == "close"
    assert reply.closed, "the server must close a connection whose body never arrived"
    assert reply.elapsed_s < ANSWER_WITHIN_S, reply.elapsed_s


def test_stalled_body_gets_408_and_the_connection_closes(slow_server: ServerHandle) -> None:
    """Content-Length 1000, ten bytes sent, then silence."""
    reply = raw_http(slow_server.base_url, head("application/json", 1000), b'{"image": ', timeout=15)
    assert_timed_out(reply)
    assert reply.elapsed_s >= BODY_TIMEOUT_S * 0.8


@pytest.mark.parametrize(
    ("content_type", "start"),
    [
        ("application/json", b'{"image": ['),
        ("image/png", b"\x89PNG\r\n\x1a\n"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n',
        ),
    ],
)
def test_trickled_body_is_cut_at_the_deadline(slow_server: ServerHandle, content_type: str, start: bytes) -> None:
    reply = raw_http(slow_server.base_url, head(content_type, 100_000), trickle(10, start), timeout=15)
    assert_timed_out(reply)


def test_early_refusal_closes_despite_a_trickled_body(slow_server: ServerHandle) -> None:
    """A 415 is sent before the body is read; without Connection: close, uvicorn would keep the
    connection open to drain the body, and every trickled byte would reset its keep-alive timer."""
    reply = raw_http(slow_server.base_url, head("text/plain", 100_000), trickle(total_s=10), timeout=15)
    assert reply.status == 415 and reply.json()["error"]["code"] == "unsupported_media_type"
    assert reply.closed and reply.elapsed_s < ANSWER_WITHIN_S


def test_other_clients_are_served_while_slow_ones_stall(slow_server: ServerHandle) -> None:
    images, _ = real_digits(1)
    body = {"image": as_json_rows(images[0])}
    stalled = 16
    with ThreadPoolExecutor(max_workers=stalled) as pool:
        gate = threading.Barrier(stalled + 1)

        def stall() -> RawReply:
            gate.wait()
            return raw_http(slow_server.base_url, head("application/json", 5000), b'{"image": [', timeout=15)

        futures = [pool.submit(stall) for _ in range(stalled)]
        gate.wait()
        time.sleep(0.2)  # let every stalled request reach the server
        with httpx.Client(base_url=slow_server.base_url, timeout=5) as client:
            for _ in range(5):
                began = time.monotonic()
                response = client.post("/predict", json=body)
                assert response.status_code == 200, response.text
                assert time.monotonic() - began < 1.0
            assert client.get("/health/ready").status_code == 200
        for future in futures:
            assert_timed_out(future.result(timeout=20))


def test_a_complete_request_keeps_its_connection(slow_server: ServerHandle) -> None:
    """The deadline only bounds the body; a normal request on a kept-alive connection is unaffected."""
    images, _ = real_digits(1)
    with httpx.Client(base_url=slow_server.base_url, timeout=5) as client:
        for _ in range(3):
            response = client.post("/predict", json={"image": as_json_rows(images[0])})
            assert response.status_code == 200 and response.headers.get("connection") != "close", response.text
