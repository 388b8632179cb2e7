"""Outermost middleware: request id, one JSON access line, and the request metrics.

Pure ASGI so it costs little per request and sees every answer, including the
ones the limits middleware sends before the app runs.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response
from service.logging_setup import REQUEST_ID, AccessLog
from service.metrics import REQUEST_DURATION, REQUESTS, REQUESTS_IN_FLIGHT, child, tally

ACCESS_LOG = AccessLog("service.access")

_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # whole value: fullmatch ($ would let a final newline in)
QUIET_ROUTES = frozenset({"/health/live", "/health/ready", "/metrics"})
SCOPE_KEY = "mnist"  # per-request facts routes hand back to this middleware (model version)
STARTED_KEY = "mnist.started"  # perf_counter() when the JSON lane began reading a request it then handed over


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is safe to log and echo, else a fresh one."""
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # 32 random hex digits, as uuid4().hex, at a quarter of the cost


def route_label(scope: Scope, routes: Sequence[BaseRoute] = ()) -> str:
    """The route template, never the raw path: raw paths would make unbounded label values."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Refused before routing (413/415 from the limits middleware): find the template it was meant for.
    for route in routes:
        match, _ = route.matches(scope)
        if match != Match.NONE and isinstance(getattr(route, "path", None), str):
            return route.path  # type: ignore[attr-defined]
    return "unmatched"


def set_model_version(scope: Scope, version: int | None) -> None:
    facts = scope.get(SCOPE_KEY)
    if isinstance(facts, dict) and version is not None:
        facts["model_version"] = str(version)


class AccessMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", []))
        token = REQUEST_ID.set(request_id)
        facts: dict[str, Any] = {"model_version": ""}
        scope[SCOPE_KEY] = facts
        status = 500
        began = scope.get(STARTED_KEY) or time.perf_counter()
        header = (b"x-request-id", request_id.encode("ascii"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        REQUESTS_IN_FLIGHT.value += 1
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Starlette's last-resort handler sits outside us and would answer without the request id.
            if started:
                raise
            await error_response(exc)(scope, receive, send_with_id)
        finally:
            REQUESTS_IN_FLIGHT.value -= 1
            record(scope, route_label(scope, self.routes), status, time.perf_counter() - began, facts["model_version"])
            REQUEST_ID.reset(token)


def record(scope: Scope, endpoint: str, status: int, elapsed: float, model_version: str) -> None:
    """The metrics and the access line of one answered request (also used by the JSON /predict lane)."""
    tally(REQUESTS, endpoint, scope["method"], status)
    child(REQUEST_DURATION, endpoint, model_version).observe(elapsed)
    # Probes and scrapes arrive every few seconds; at info they would drown the real traffic.
    level = logging.DEBUG if endpoint in QUIET_ROUTES else logging.INFO
    ACCESS_LOG.request(level, scope["method"], scope["path"], endpoint, status, elapsed, model_version)
