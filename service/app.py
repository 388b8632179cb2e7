"""The FastAPI application: ``create_app(settings)`` wires middleware, routes, errors and the model manager.

Start-up never waits for the model: the manager loads in the background so
/health/live answers at once and /health/ready turns 200 when a verified
version is warm. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, NoReturn

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount

from service import metrics
from service.api import (
    errors,
    openapi,
    routes_admin,
    routes_docs,
    routes_health,
    routes_models,
    routes_oip,
    routes_pages,
    routes_predict,
)
from service.api.access import AccessMiddleware
from service.api.limits import LimitsMiddleware
from service.errors import DeviceUnavailable
from service.inputs.decoder import ImageDecoder
from service.logging_setup import configure_logging, drain, write_directly
from service.settings import Settings

log = logging.getLogger("service")

DESCRIPTION = """
Classifies handwritten digits with the model version the registry marks `production`.

* `POST /predict`: one digit as JSON (`{"image": 28x28 numbers 0..255}`), a multipart upload
  (field `file`) or a raw `image/png` / `image/jpeg` body.
* `POST /predict/batch`: several digits as JSON `{"images": [...]}` or multipart parts `files`.
* Every error is `{"error": {"code": "...", "message": "..."}}` with a stable `code`.
* `/v2/...`: the Open Inference Protocol (KServe v2), for Triton and KServe clients; its errors are
  `{"error": "..."}` with the same status codes.

A digit pad for the browser is at `/`, and each version's model card at `/models/{version}/card`.
"""

# A config error (cuda asked for, none present) must stop the process, not leave it forever unready.
FATAL_AT_START = (DeviceUnavailable,)
CONFIG_ERROR = 2
START_GRACE_S = 0.5
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def _default_manager(settings: Settings) -> Any:
    from service.inference.model_manager import ModelManager

    return ModelManager(settings)


def _stop_for_configuration(detail: str) -> NoReturn:
    log.critical("configuration error; stopping", extra={"detail": detail})
    drain()
    # The code a configuration error has before the server starts (__main__), which also tells a parent of several
    # workers not to start another: that one would fail the same way, for ever. Not an exception: uvicorn would log
    # its traceback and exit 3.
    os._exit(CONFIG_ERROR)


def _log_start_failure(task: asyncio.Task[None]) -> None:
    exc = None if task.cancelled() else task.exception()
    if exc is None:
        return
    if isinstance(exc, FATAL_AT_START):
        _stop_for_configuration(str(exc))
    log.error("model manager failed to start", exc_info=(type(exc), exc, exc.__traceback__))


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    manager = app.state.manager
    # What is alive now (the modules, the app) lives as long as the process. Frozen, it is no longer walked by
    # the collector's full passes, which took about 80 ms each under load, every second or so: a pause for every
    # request in flight (benchmarks/README.md). The model loads after this, so a swapped-out version is still
    # collected; loading the first one adds almost no Python objects.
    gc.freeze()
    app.state.decoder.start()
    start = asyncio.create_task(manager.start(), name="model-manager-start")
    done, _ = await asyncio.wait({start}, timeout=START_GRACE_S)
    if start in done and isinstance(start.exception(), FATAL_AT_START):
        raise start.exception()  # type: ignore[misc]
    start.add_done_callback(_log_start_failure)
    settings = app.state.settings
    grpc_server = None
    if settings.grpc_port:
        from service.api import grpc_oip  # grpcio only when gRPC is on

        try:
            grpc_server = await grpc_oip.start(app, settings.host, settings.grpc_port)
        except OSError as exc:  # the port in use, or not an address here
            _stop_for_configuration(str(exc))
    log.info("service started", extra={"backend": settings.backend, "device": settings.device})
    try:
        yield
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
        await manager.stop()
        app.state.decoder.stop()
        metrics.forget_live_gauges()
        gc.unfreeze()
        log.info("service stopped")
        write_directly()  # the last lines, uvicorn's included, before a SIGTERM raised again ends the process


def create_app(settings: Settings | None = None, *, manager: Any | None = None) -> FastAPI:
    """Build the app; ``manager`` replaces the real ModelManager in tests."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="MNIST digit service",
        description=DESCRIPTION,
        version="1.0",
        lifespan=_lifespan,
        # FastAPI's own docs pages load Swagger UI and ReDoc from a CDN: /docs is served by routes_docs instead.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url=openapi.OPENAPI_PATH if settings.docs else None,
        # The service exports its own Prometheus metrics and JSON logs; FastAPI's OpenTelemetry hooks would
        # otherwise ask, on every request, whether a tracer, meter or logger provider has been configured.
        telemetry=NO_TELEMETRY,
        # /predict/ is no route: a 404 in our envelope, not a 307 to the Host header's name (any host a client
        # sends, and http:// behind a TLS ingress) that makes clients send their body again.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.manager = manager if manager is not None else _default_manager(settings)
    app.state.decoder = ImageDecoder(settings, app.state.manager)  # its threads start with the lifespan
    errors.install(app)
    # The prediction routes go on the app's own router, first: Starlette tries routes in order, and a request
    # pays for every route tried before its own, more for a route inside an included router (PredictionRoute).
    prediction_routers = [routes_predict.router, routes_oip.infer_router]
    routers = [routes_models.router, routes_health.router, routes_oip.router]
    if settings.admin_token is not None:
        routers.append(routes_admin.router)
    mounts: list[Mount] = []
    if settings.ui:
        routers.append(routes_pages.router)
        mounts.append(routes_pages.assets())
    if settings.docs:
        routers.append(routes_docs.router)
        mounts.append(routes_docs.assets())
    for router in prediction_routers:
        app.router.routes.extend(router.routes)
    for router in routers:
        app.include_router(router)
    app.router.routes.extend(mounts)
    openapi.install(app, settings)
    # add_middleware stacks outward: limits run inside the access log, so refusals are logged and counted.
    app.add_middleware(LimitsMiddleware, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s)
    if settings.cors_origins:
        # Only origins listed by MNIST_CORS_ORIGINS, never with credentials. Inside the access log, so preflights
        # are logged and counted; outside the limits, so a refusal of theirs still carries the CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
            expose_headers=["X-Model-Version", "X-Request-ID", "Retry-After"],
            max_age=600,
        )
    # Every route in the order the app tries them, FastAPI's own /openapi.json included.
    app.add_middleware(AccessMiddleware, routes=app.router.routes)
    return app
