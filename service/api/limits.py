"""Limits enforced before any parsing: body size, content type and content encoding.

Pure ASGI in front of the app: uvicorn has no body limit and FastAPI reads
bodies whole, so the cap has to count bytes as they stream. A declared
Content-Length over the cap is refused before a byte is read; chunked or lying
bodies are cut off as soon as the count passes it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response
from service.errors import PayloadTooLarge, UnsupportedEncoding, UnsupportedMediaType

ALLOWED_TYPES = frozenset({"multipart/form-data", "image/png", "image/jpeg", "application/json"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _refusal(self, scope: Scope) -> Exception | None:
        encoding = _header(scope, b"content-encoding")
        if encoding is not None and encoding.strip().lower() not in {"", "identity"}:
            return UnsupportedEncoding("Content-Encoding must be identity; compressed bodies are not accepted")
        length_text = _header(scope, b"content-length")
        chunked = "chunked" in (_header(scope, b"transfer-encoding") or "").lower()
        length = int(length_text) if length_text and length_text.strip().isdigit() else None
        if length is not None and length > self.max_body_bytes:
            return PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes")
        has_body = chunked or bool(length)
        if scope["method"] in BODY_METHODS and has_body:
            kind = media_type(_header(scope, b"content-type"))
            if kind not in ALLOWED_TYPES:
                allowed = ", ".join(sorted(ALLOWED_TYPES))
                return UnsupportedMediaType(f"Content-Type {kind or '(none)'!r} is not accepted; use one of {allowed}")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return

        received = 0
        started = False
        limit = self.max_body_bytes

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge as exc:
            # Reached only when a reader outside our handlers consumed the body; the app maps it otherwise.
            if started:
                raise
            await error_response(exc)(scope, receive, send)
