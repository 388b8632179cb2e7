"""Limits enforced before any parsing: body size, body-read deadline, content type and content encoding.

Pure ASGI in front of the app: uvicorn has no body limit and FastAPI reads
bodies whole, so the cap has to count bytes as they stream. A declared
Content-Length over the cap is refused before a byte is read; chunked or lying
bodies are cut off as soon as the count passes it.

uvicorn has no body timeout either: a client that trickles its body (or stops
half-way) would keep a request open for as long as it likes. The body must
arrive within ``body_timeout_s`` of the request's start, else 408. Any answer
sent before the body was read to its end carries ``Connection: close``:
otherwise uvicorn keeps the connection open to drain the unread body, and each
byte the client sends resets its keep-alive timer, so a trickler would never
leave. Request heads (line and headers) are outside our reach: uvicorn's
httptools parser has no timeout for them; a proxy in front must enforce that one.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response, speaks_oip
from service.errors import PayloadTooLarge, RequestTimeout, UnsupportedEncoding, UnsupportedMediaType

ALLOWED_TYPES = frozenset({"multipart/form-data", "image/png", "image/jpeg", "application/json"})
# The Open Inference Protocol's clients send JSON, JSON followed by binary tensor data, and often no
# Content-Type at all (tritonclient's HTTP client sends none): the body's form is in the request itself.
OIP_TYPES = frozenset({"application/json", "application/octet-stream", ""})
ADMIN_TYPES = frozenset({"application/json"})  # /admin/*: a small JSON object, or no body
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CLOSE = (b"connection", b"close")


_HEAD_FIELDS = (b"content-type", b"content-length", b"content-encoding", b"transfer-encoding")


_LISTS = (b"content-encoding", b"transfer-encoding")  # lists: several lines of one are one list, comma-joined


def _head_fields(scope: Scope) -> dict[bytes, str]:
    """The headers the limits read from one pass over the request head: each list header whole (a gzip on a second
    Content-Encoding line was never read), any other its first value."""
    found: dict[bytes, str] = {}
    for key, value in scope["headers"]:
        if key in _HEAD_FIELDS:
            if key not in found:
                found[key] = value.decode("latin-1")
            elif key in _LISTS:
                found[key] += ", " + value.decode("latin-1")
    return found


def _codings(value: str | None) -> set[str]:
    return {coding.strip().lower() for coding in (value or "").split(",")} - {"", "identity"}


# Older names clients still send for the two formats; the bytes decide the format anyway.
_IMAGE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def media_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return _IMAGE_ALIASES.get(kind, kind)


def body_timeout(timeout_s: float) -> RequestTimeout:
    return RequestTimeout(f"the request body did not arrive within {timeout_s:g} s; send it at once")


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        if body_timeout_s <= 0:
            raise ValueError("body_timeout_s must be positive (seconds to receive a whole request body)")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    def _refusal(self, scope: Scope, head: dict[bytes, str]) -> Exception | None:
        length_text = head.get(b"content-length")
        transfer = _codings(head.get(b"transfer-encoding"))
        length = int(length_text) if length_text and length_text.strip().isdigit() else None
        has_body = bool(transfer) or bool(length)
        # Only a body can be compressed: a GET that names an encoding is answered (a probe sending one got 415).
        if has_body and _codings(head.get(b"content-encoding")):
            return UnsupportedEncoding("Content-Encoding must be identity; compressed bodies are not accepted")
        if transfer - {"chunked"}:
            return UnsupportedEncoding("Transfer-Encoding may only be chunked; compressed bodies are not accepted")
        if length is not None and length > self.max_body_bytes:
            return PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes")
        if scope["method"] in BODY_METHODS and has_body:
            kind = media_type(head.get(b"content-type"))
            path = scope["path"]
            admin = path.startswith("/admin/")
            allowed_types = OIP_TYPES if speaks_oip(path) else ADMIN_TYPES if admin else ALLOWED_TYPES
            if kind not in allowed_types:
                allowed = ", ".join(sorted(t for t in allowed_types if t))
                return UnsupportedMediaType(f"Content-Type {kind or '(none)'!r} is not accepted; use one of {allowed}")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = _head_fields(scope)
        length_text = head.get(b"content-length")
        # Only a request that announces a body can leave one unread; GETs keep their keep-alive.
        body_expected = bool(head.get(b"transfer-encoding")) or (
            length_text is not None and length_text.strip() not in {"", "0"}
        )
        body_done = not body_expected
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        refusal = self._refusal(scope, head)
        if refusal is not None:
            await error_response(refusal, oip=speaks_oip(scope["path"]))(scope, receive, guarded_send)
            return

        received = 0
        limit = self.max_body_bytes
        timeout_s = self.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                # After the body only http.disconnect is left; it may rightly wait as long as the response takes.
                return await receive()
            try:
                # Data already buffered is returned even past the deadline: only waiting for more is bounded.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise body_timeout(timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                body_done = not message.get("more_body", False)
            else:  # http.disconnect: nothing more will come
                body_done = True
            return message

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except (PayloadTooLarge, RequestTimeout) as exc:
            # Reached only when a reader outside our handlers consumed the body; the app maps it otherwise.
            if started:
                raise
            await error_response(exc, oip=speaks_oip(scope["path"]))(scope, receive, guarded_send)
