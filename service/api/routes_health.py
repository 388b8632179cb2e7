"""GET /health/live, GET /health/ready and GET /metrics."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from service import metrics
from service.api.errors import envelope
from service.api.schemas import error_responses
from service.errors import ModelNotReady

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="The process answers")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get(
    "/health/ready",
    summary="A verified model version is loaded and warmed up",
    response_model=None,
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready", "model_version": 3}}}},
        **error_responses(ModelNotReady),
    },
)
async def ready(request: Request) -> JSONResponse:
    manager = request.app.state.manager
    if not manager.ready:
        reason = manager.not_ready_reason or "the model is loading"
        return envelope(503, "model_not_ready", reason, {"Retry-After": "1"})
    # status() reads the registry from disk: off the event loop.
    status: dict[str, Any] = await anyio.to_thread.run_sync(manager.status)
    body: dict[str, Any] = {"status": "ready"}
    for key in ("model_version", "backend", "device"):
        if key in status:
            body[key] = status[key]
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
async def prometheus_metrics() -> Response:
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
