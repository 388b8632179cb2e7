"""The body-read deadline and Connection: close of LimitsMiddleware, by direct ASGI calls (no sockets)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from service.api.limits import LimitsMiddleware
from service.app import create_app
from service.settings import Settings
from tests.unit.api_fakes import FakeManager, call, scope_for

DEADLINE_S = 0.2


def stalling_receive(first: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A client that sends ``first`` and then nothing more, ever (as if it stopped mid-body)."""
    pending = [{"type": "http.request", "body": first, "more_body": True}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.Event().wait()  # never set
        raise AssertionError("unreachable")

    return receive


@pytest.fixture()
def app(tmp_path: Path) -> Any:
    # No lifespan needed: the stall happens before any route touches the manager.
    return create_app(Settings(model_dir=tmp_path, body_timeout_s=DEADLINE_S), manager=FakeManager())


MULTIPART_START = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG'


@pytest.mark.parametrize(
    ("content_type", "first"),
    [
        ("application/json", b'{"image": [[0, 0'),
        ("image/png", b"\x89PNG\r\n\x1a\n"),
        ("multipart/form-data; boundary=xyz", MULTIPART_START),
    ],
    ids=["json", "png", "multipart"],
)
def test_stalled_body_gets_408_and_close(app: Any, content_type: str, first: bytes) -> None:
    scope = scope_for("POST", "/predict", {"content-type": content_type, "content-length": "1000"})
    began = time.monotonic()
    status, headers, body = asyncio.run(call(app, scope, stalling_receive(first)))
    took = time.monotonic() - began
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert headers.get(b"connection") == b"close"
    assert DEADLINE_S * 0.8 <= took < DEADLINE_S + 2


def test_deadline_comes_from_settings(tmp_path: Path) -> None:
    """app.py passes only max_body_bytes today; the middleware then reads MNIST_BODY_TIMEOUT_S itself."""
    app = create_app(Settings(model_dir=tmp_path, body_timeout_s=0.1), manager=FakeManager())
    scope = scope_for("POST", "/predict/batch", {"content-type": "application/json", "content-length": "50"})
    began = time.monotonic()
    status, _, _ = asyncio.run(call(app, scope, stalling_receive(b"{")))
    assert status == 408 and time.monotonic() - began < 1.5


def test_complete_body_keeps_the_connection(app: Any) -> None:
    """A body read to its end leaves keep-alive alone, even when the answer is an error."""
    body = b'{"image": 1}'
    scope = scope_for("POST", "/predict", {"content-type": "application/json", "content-length": str(len(body))})
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    status, headers, _ = asyncio.run(call(app, scope, receive))
    assert status == 422 and b"connection" not in headers


def test_early_refusal_with_unread_body_closes(app: Any) -> None:
    """A 415 sent before the body is read must close: else a trickler keeps the connection by draining slowly."""
    scope = scope_for("POST", "/predict", {"content-type": "text/plain", "content-length": "100000"})
    status, headers, body = asyncio.run(call(app, scope, stalling_receive(b"x")))
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"
    assert headers.get(b"connection") == b"close"


def test_get_without_body_is_untouched(app: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    status, headers, _ = asyncio.run(call(app, scope_for("GET", "/health/live", {}), receive))
    assert status == 200 and b"connection" not in headers


def test_non_positive_deadline_is_refused() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ValueError, match="body_timeout_s"):
        LimitsMiddleware(inner, max_body_bytes=1024, body_timeout_s=0)
