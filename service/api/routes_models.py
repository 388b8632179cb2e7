"""GET /models and GET /models/{version}: what the registry holds and what is being served."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request

from registry import errors as reg
from registry import parse_version
from service.api.schemas import error_responses

router = APIRouter(tags=["models"])


@router.get(
    "/models",
    summary="Versions, aliases, the version being served, its backend, device, key metrics and last load error",
)
async def list_models(request: Request) -> dict[str, Any]:
    # status() reads the registry from disk: off the event loop.
    return await anyio.to_thread.run_sync(request.app.state.manager.status)


@router.get(
    "/models/{version}",
    summary="Metadata of one version",
    responses=error_responses(reg.VersionNotFound, reg.InvalidVersion),
)
async def model_metadata(
    # Read as text and checked by parse_version (422 invalid_version), the one check of a version id; the schema
    # says the same in OpenAPI's terms: registry.files.VERSION_RE takes 1 to 9 digits, no leading zero.
    version: Annotated[
        str, Path(json_schema_extra={"type": "integer", "minimum": 1, "maximum": 999_999_999}, examples=[1])
    ],
    request: Request,
) -> dict[str, Any]:
    # Integers only, checked before the registry builds any path from it.
    number = parse_version(version)
    registry = request.app.state.manager.registry
    return await anyio.to_thread.run_sync(registry.metadata, number)
