"""Outermost middleware: request id, one JSON access line, and the request metrics.

Pure ASGI so it sees every answer, including the ones the limits middleware
sends before the app runs. The model version of an answer comes from its
``X-Model-Version`` header, which the prediction routes set.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence

from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response, speaks_oip
from service.logging_setup import REQUEST_ID
from service.metrics import IN_FLIGHT, PROTOCOL_OIP, PROTOCOL_REST, request_duration, requests_total

log = logging.getLogger("service.access")

_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # whole value: fullmatch ($ would let a final newline in)
QUIET_ROUTES = frozenset({"/health/live", "/health/ready", "/metrics", "/v2/health/live", "/v2/health/ready"})
MODEL_VERSION_HEADER = b"x-model-version"
CLIENT_CLOSED_REQUEST = 499


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is safe to log and echo, else a fresh one."""
    sent = next((value for name, value in headers if name == b"x-request-id"), None)
    return safe_request_id(None if sent is None else sent.decode("latin-1"))


def safe_request_id(sent: str | None) -> str:
    """``sent`` when it is safe to log and echo (HTTP's header, gRPC's metadata alike), else a fresh id."""
    return sent if sent is not None and _VALID_ID.fullmatch(sent) else os.urandom(16).hex()


def route_label(scope: Scope, routes: Sequence[BaseRoute] = (), root_path: str = "") -> str:
    """The route template, never the raw path: raw paths would make unbounded label values."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Refused before routing (413/415 from the limits middleware), or answered by a mount (the pad's files), which
    # names no route and moved root_path under itself: find the template it was meant for, from the top.
    top = {**scope, "root_path": root_path}
    for route in routes:
        match, _ = route.matches(top)
        if match != Match.NONE and isinstance(getattr(route, "path", None), str):
            return route.path  # type: ignore[attr-defined]
    return "unmatched"


class AccessMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        root_path = scope.get("root_path", "")
        token = REQUEST_ID.set(request_id)
        began = time.perf_counter()
        status, version, started = 500, "", False
        id_header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status, version, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                headers = message.setdefault("headers", [])
                version = next((v.decode() for k, v in headers if k == MODEL_VERSION_HEADER), "")
                headers.append(id_header)
            await send(message)

        # Probes and scrapes are not the load the HPA scales on: a scrape counting itself read 1 on an idle pod.
        counted = scope["path"].removeprefix(root_path) not in QUIET_ROUTES
        if counted:
            IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client left before its body arrived: no one to answer, and not the service's fault (no 5xx for
            # the error-ratio alert, no traceback). nginx's code for it.
            status = CLIENT_CLOSED_REQUEST
        except Exception as exc:
            # Starlette's last-resort handler sits outside us and would answer without the request id.
            if started:
                raise
            await error_response(exc, oip=speaks_oip(scope["path"]))(scope, receive, send_with_id)
        finally:
            if counted:
                IN_FLIGHT.dec()
            elapsed = time.perf_counter() - began
            endpoint = route_label(scope, self.routes, root_path)
            protocol = PROTOCOL_OIP if speaks_oip(scope["path"]) else PROTOCOL_REST
            requests_total(endpoint, scope["method"], status, protocol).inc()
            if status != CLIENT_CLOSED_REQUEST:  # the latency of answers: a client that left waited for none
                request_duration(endpoint, version, protocol).observe(elapsed)
            # Probes and scrapes arrive every few seconds; at info they would drown the real traffic.
            level = logging.DEBUG if endpoint in QUIET_ROUTES else logging.INFO
            fields = {
                "method": scope["method"],
                "path": scope["path"][:200],
                "route": endpoint,
                "protocol": protocol,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "model_version": version or None,
            }
            log.log(level, "request", extra=fields)
            REQUEST_ID.reset(token)
