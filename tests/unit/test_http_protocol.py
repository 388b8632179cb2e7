"""The request-head cap on uvicorn's httptools protocol, driven byte by byte without a socket.

``service/api/http_protocol.py`` subclasses uvicorn's ``HttpToolsProtocol``, an internal class: these
tests fail loudly when a uvicorn upgrade renames or reshapes what the subclass relies on (constraints.txt
pins uvicorn; upgrade it together with this module).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.api.http_protocol import HeadCappedHttpToolsProtocol

CAP = 1024


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _connection(loop: asyncio.AbstractEventLoop) -> tuple[HeadCappedHttpToolsProtocol, FakeTransport]:
    config = uvicorn.Config(_app, h11_max_incomplete_event_size=CAP, log_config=None, lifespan="off")
    config.load()
    protocol = HeadCappedHttpToolsProtocol(config, ServerState(), {}, _loop=loop)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def test_the_hooks_the_head_cap_overrides_still_exist_in_uvicorn() -> None:
    for name in ("connection_made", "data_received", "on_headers_complete", "on_message_complete", "send_400_response"):
        assert callable(getattr(HttpToolsProtocol, name, None)), f"uvicorn's HttpToolsProtocol lost {name}"
    assert list(inspect.signature(HttpToolsProtocol.__init__).parameters)[:4] == [
        "self", "config", "server_state", "app_state",
    ]  # fmt: skip


def test_a_head_trickled_past_the_cap_is_answered_400_and_closed() -> None:
    async def scenario() -> FakeTransport:
        protocol, transport = _connection(asyncio.get_running_loop())
        protocol.data_received(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3 * CAP // 60):
            if transport.closed:
                break
            protocol.data_received(b"X-Pad: " + b"a" * 50 + b"\r\n")
        return transport

    transport = asyncio.run(scenario())
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 400 ")


def test_heads_under_the_cap_are_served_one_after_another_on_a_connection() -> None:
    async def scenario() -> FakeTransport:
        protocol, transport = _connection(asyncio.get_running_loop())
        head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (CAP // 2) + b"\r\n\r\n"
        for _ in range(4):  # together over the cap: the count starts again with every request
            protocol.data_received(head)
            await asyncio.sleep(0.01)
        return transport

    transport = asyncio.run(scenario())
    assert not transport.closed and transport.written.count(b"HTTP/1.1 204 ") == 4
