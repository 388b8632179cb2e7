"""The lane for the busiest request, ``POST /predict`` with a plain JSON digit, in raw ASGI.

Under 64 clients the full stack (seven middleware layers, ours, FastAPI's and
Starlette's, plus the Starlette request and response objects) cost the event
loop more per request than parsing the digit and answering it. The lane
answers only what it can answer exactly as the full app would:

* it takes a request whose head announces a JSON body by Content-Length within
  ``MNIST_MAX_BODY_BYTES``, with no Content-Encoding or Transfer-Encoding;
* it reads the body under the same deadline as ``LimitsMiddleware`` (408 after
  ``MNIST_BODY_TIMEOUT_S``, with ``Connection: close``);
* a body ``json_input.parse_compact_request`` does not accept (other layouts,
  errors, a blank canvas), a client that leaves, a body longer than announced:
  all go, with the bytes already read, to the full app, which words every error;
* once the digit is parsed the lane answers itself, the prediction or the error
  envelope of ``api.errors``, so no image is ever predicted twice.

Request ids, metrics and the access line come from ``api.access``, as for every
other request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import deadlines
from service.api.access import STARTED_KEY, record, request_id_from
from service.api.errors import error_response
from service.api.limits import BODY_DEADLINE_KEY, CLOSE, body_timeout, media_type
from service.api.routes_predict import count, prediction_json
from service.errors import ServiceError
from service.inputs.json_input import parse_compact_request
from service.logging_setup import REQUEST_ID
from service.metrics import REQUESTS_IN_FLIGHT
from service.settings import Settings

PATH = "/predict"
JSON_HEADERS = [(b"content-type", b"application/json")]


def _announced_json_length(headers: list[tuple[bytes, bytes]], max_body_bytes: int) -> int | None:
    """The body length when the head announces a plain JSON body the lane may take, else None."""
    length: int | None = None
    is_json = seen_type = False
    for name, value in headers:
        if name == b"content-length":
            text = value.strip()
            if not text.isdigit() or length is not None:
                return None  # malformed or repeated: the full app's limits decide
            length = int(text)
        elif name == b"content-type":
            if seen_type:
                return None  # repeated: the full app goes by the first one, and says so
            seen_type = True
            is_json = value == b"application/json" or media_type(value.decode("latin-1")) == "application/json"
        elif name == b"transfer-encoding" or (name == b"content-encoding" and value.strip().lower() != b"identity"):
            return None
    if not is_json or length is None or not 0 < length <= max_body_bytes:
        return None
    return length


def _replay(chunks: list[bytes], more_body: bool, receive: Receive) -> Receive:
    """``receive`` for the full app: what the lane already read, then the rest of the real stream."""
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": more_body}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


class JsonPredictLane:
    def __init__(self, settings: Settings, manager: Any) -> None:
        self.manager = manager
        self.settings = settings
        self.max_body_bytes = settings.max_body_bytes
        self.body_timeout_s = settings.body_timeout_s

    @staticmethod
    def takes(scope: Scope) -> bool:
        return scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST"

    async def __call__(self, scope: Scope, receive: Receive, send: Send, full_app: ASGIApp) -> None:
        length = _announced_json_length(scope["headers"], self.max_body_bytes)
        if length is None:
            await full_app(scope, receive, send)
            return
        began = time.perf_counter()
        deadline = time.monotonic() + self.body_timeout_s
        REQUESTS_IN_FLIGHT.value += 1  # from the first byte, as the access middleware counts: a slow upload
        try:
            try:
                chunks, rest = await self._read_body(receive, length, deadline)
            except TimeoutError:
                await self._answer(scope, receive, send, began, body_timeout(self.body_timeout_s))
                return
            if rest is None:
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                try:
                    image = parse_compact_request(body)
                except Exception:
                    image = None  # the full app parses it again and words the error (or maps the fault) alike
                if image is not None:
                    await self._answer(scope, receive, send, began, image)
                    return
                rest = _replay([body], False, receive)
        finally:
            REQUESTS_IN_FLIGHT.value -= 1
        # The full app counts the request from here on, with the clock and body deadline it started with.
        scope[STARTED_KEY], scope[BODY_DEADLINE_KEY] = began, deadline
        await full_app(scope, rest, send)

    async def _read_body(self, receive: Receive, length: int, deadline: float) -> tuple[list[bytes], Receive | None]:
        """The body's chunks, and None once it is whole as announced; else the receive the full app takes
        over with (the client left half-way, or sent other than it announced). TimeoutError past the deadline."""
        chunks: list[bytes] = []
        received = 0
        with deadlines.timeout_at(deadline):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return chunks, _replay(chunks, True, _then(message))
                chunk = message.get("body", b"")
                chunks.append(chunk)
                received += len(chunk)
                more = message.get("more_body", False)
                if received > length or (not more and received != length):
                    return chunks, _replay(chunks, more, receive)
                if not more:
                    return chunks, None

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, began: float, work: np.ndarray | Exception
    ) -> None:
        """Answer the parsed ``work`` image, or the error that ended the request before it (408, with
        ``Connection: close`` since the body was not read to its end)."""
        request_id = request_id_from(scope["headers"])
        token = REQUEST_ID.set(request_id)
        id_header = (b"x-request-id", request_id.encode("ascii"))
        status, version = 500, ""
        try:
            if isinstance(work, Exception):
                raise work
            (result,) = await self.manager.predict(work[np.newaxis])
            if isinstance(result, ServiceError):
                raise result
            count(result)
            version = str(result.model_version)
            content = prediction_json(result, self.settings)
            status = 200
            headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode()), id_header]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": content})
        except Exception as exc:
            if status == 200:  # the answer was on its way: nothing else can be sent
                raise
            response = error_response(exc)
            status = response.status_code
            extra = [id_header, CLOSE] if work is exc else [id_header]
            await response(scope, receive, _with_headers(send, extra))
        finally:
            record(scope, PATH, status, time.perf_counter() - began, version)
            REQUEST_ID.reset(token)


def _then(message: Message) -> Receive:
    """A receive that hands back ``message`` (the disconnect already taken from the stream) for ever."""

    async def again() -> Message:
        return message

    return again


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Callable[[Message], Awaitable[None]]:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending
