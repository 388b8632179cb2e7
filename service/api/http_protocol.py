"""uvicorn's httptools protocol with the request-head cap that only its h11 protocol has.

httptools (C, llhttp) parses a request several times faster than h11 (pure Python), but uvicorn passes
``h11_max_incomplete_event_size`` to h11 alone: under httptools a client could stream an endless request
line or header and have it buffered. This subclass applies the same rule, with the same setting, as h11:
a request head still incomplete after more than ``h11_max_incomplete_event_size`` bytes is answered 400
and the connection closed (a head that arrives whole in one read is parsed, as h11 parses it).

    uvicorn.Config(app, http="service.api.http_protocol:HeadCappedHttpToolsProtocol")
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# uvicorn's own default for h11 (h11.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE) when the setting is None.
DEFAULT_HEAD_CAP = 16 * 1024


class HeadCappedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._head_cap = config.h11_max_incomplete_event_size or DEFAULT_HEAD_CAP
        self._in_head = True  # between messages, bytes belong to the next request's head
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head, self._head_bytes = True, 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)  # on_headers_complete, called in here, ends the head
        if self._in_head and self._head_bytes > self._head_cap and not self.transport.is_closing():
            self.logger.warning("Request head too large.")
            self.send_400_response("Invalid HTTP request received.")  # h11's answer to the same case

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()
