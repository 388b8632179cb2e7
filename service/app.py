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
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from service import metrics
from service.api import errors, routes_admin, routes_health, routes_models, routes_predict
from service.api.access import AccessMiddleware
from service.api.json_lane import JsonPredictLane
from service.api.limits import LimitsMiddleware
from service.errors import DeviceUnavailable
from service.logging_setup import AccessLog, configure_logging
from service.settings import Settings

log = logging.getLogger("service")

DESCRIPTION = """
Classifies handwritten digits with the model version the registry marks `production`.

* `POST /predict`: one digit as JSON (`{"image": 28x28 numbers 0..255}`), a multipart upload
  (field `file`) or a raw `image/png` / `image/jpeg` body.
* `POST /predict/batch`: several digits as JSON `{"images": [...]}` or multipart parts `files`.
* Every error is `{"error": {"code": "...", "message": "..."}}` with a stable `code`.
"""

# A config error (cuda asked for, none present) must stop the process, not leave it forever unready.
FATAL_AT_START = (DeviceUnavailable,)
START_GRACE_S = 0.5
# Decoding is CPU-bound and the machine small: a few threads, so hostile images cannot take every core.
DECODE_THREADS = 2
# How long the busy event loop may keep the GIL while the model thread waits for it (Python's default: 5 ms).
# A finished model call needs the GIL to hand back its outputs; at 5 ms that wait stretched every call and
# the answers of its whole batch (bench, JSON at c=64: +6 % requests/s at 0.5 ms).
GIL_SWITCH_INTERVAL_S = 0.0005


def _default_manager(settings: Settings) -> Any:
    from service.inference.model_manager import ModelManager

    return ModelManager(settings)


def _log_start_failure(task: asyncio.Task[None]) -> None:
    exc = None if task.cancelled() else task.exception()
    if exc is None:
        return
    log.error("model manager failed to start", exc_info=(type(exc), exc, exc.__traceback__))
    if isinstance(exc, FATAL_AT_START):
        log.critical("configuration error; stopping", extra={"detail": str(exc)})
        os.kill(os.getpid(), signal.SIGTERM)


async def _housekeeping() -> None:
    """Once a second: tallied metrics in (see metrics.publish), buffered access lines out."""
    while True:
        await asyncio.sleep(AccessLog.FLUSH_EVERY_S)
        _publish_and_flush()


def _publish_and_flush() -> None:
    """Neither may stop the other, nor the task that calls them."""
    try:
        metrics.publish()
    except Exception:
        log.exception("publishing metrics failed")
    with contextlib.suppress(Exception):  # a broken stdout: the lines wait, bounded, for the next try
        AccessLog.flush()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    manager = app.state.manager
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    app.state.decode_executor = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode")
    start = asyncio.create_task(manager.start(), name="model-manager-start")
    done, _ = await asyncio.wait({start}, timeout=START_GRACE_S)
    if start in done and isinstance(start.exception(), FATAL_AT_START):
        raise start.exception()  # type: ignore[misc]
    start.add_done_callback(_log_start_failure)
    # What exists now (modules, the app, settings) lives as long as the process. Frozen, it is no longer
    # walked by every full garbage collection, which paused the event loop for milliseconds at a time
    # under load (bench, JSON at c=64: p99 55 -> 31 ms). Collected first so no garbage is frozen with it.
    gc.collect()
    gc.freeze()
    log.info("service started", extra={"backend": app.state.settings.backend, "device": app.state.settings.device})
    flusher = asyncio.create_task(_housekeeping(), name="housekeeping")
    try:
        yield
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await flusher
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
        await manager.stop()
        app.state.decode_executor.shutdown(wait=False, cancel_futures=True)
        # After the batcher answered or refused everything: the last figures this worker writes.
        _publish_and_flush()
        metrics.forget_live_gauges()
        log.info("service stopped")


class ServingApp(FastAPI):
    """The FastAPI app with the JSON /predict lane in front of its middleware (see service.api.json_lane)."""

    lane: JsonPredictLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lane is not None and self.lane.takes(scope):
            await self.lane(scope, receive, send, super().__call__)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, manager: Any | None = None) -> ServingApp:
    """Build the app; ``manager`` replaces the real ModelManager in tests."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    app = ServingApp(
        title="MNIST digit service",
        description=DESCRIPTION,
        version="1.0",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.manager = manager if manager is not None else _default_manager(settings)
    app.state.decode_executor = None  # the lifespan installs the pool; None falls back to asyncio's default
    errors.install(app)
    routers = [routes_predict.router, routes_models.router, routes_health.router]
    if settings.admin_token is not None:
        routers.append(routes_admin.router)
    for router in routers:
        app.include_router(router)
    # add_middleware stacks outward: limits run inside the access log, so refusals are logged and counted;
    # the direct /predict route inside both. Plain JSON digits take the lane in front of it all (ServingApp).
    app.add_middleware(routes_predict.PredictDirectRoute)
    app.add_middleware(LimitsMiddleware, max_body_bytes=settings.max_body_bytes, body_timeout_s=settings.body_timeout_s)
    app.add_middleware(AccessMiddleware, routes=[route for router in routers for route in router.routes])
    app.lane = JsonPredictLane(settings, app.state.manager)
    return app
