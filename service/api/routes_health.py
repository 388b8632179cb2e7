"""GET /health/live, GET /health/ready and GET /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from service import metrics
from service.api.errors import envelope
from service.api.schemas import error_responses
from service.errors import ModelNotReady

router = APIRouter(tags=["operations"])


# HEAD too: what uptime checkers send by default (as for the pad's page); Kubernetes' probes send GET. Left out of
# the OpenAPI document, where a second operation of the same function would repeat its operation id.
@router.head("/health/live", include_in_schema=False)
@router.get("/health/live", summary="The process answers")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.head("/health/ready", include_in_schema=False)
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
    model = manager.current if manager.ready else None
    if model is None:
        reason = manager.not_ready_reason or "the model is loading"
        return envelope(503, "model_not_ready", reason, {"Retry-After": "1"})
    # From memory only: a probe that read the registry took longer with every version, and on a hung volume every
    # replica would fail its probe at once while its model served from memory.
    return JSONResponse(
        {
            "status": "ready",
            "model_version": model.version,
            "backend": model.backend.name,
            "device": model.backend.device,
        }
    )


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
async def prometheus_metrics() -> Response:
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
