"""POST /admin/reload, /admin/promote, /admin/rollback: mounted only when MNIST_ADMIN_TOKEN is set."""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from registry import layout
from registry.errors import AliasError, InvalidVersion, RegistryReadOnly, VersionNotFound
from service.api.input_forms import parse_json
from service.api.schemas import PromoteIn, ReloadIn, RollbackIn, error_responses
from service.errors import Forbidden, InvalidInput, InvalidJSON, ModelLoadError, ModelNotReady, Unauthorized

log = logging.getLogger("service.admin")


def require_token(request: Request) -> None:
    expected = request.app.state.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        log.warning("admin refused: no bearer token", extra={"path": request.url.path})
        raise Unauthorized("this endpoint needs Authorization: Bearer <admin token>")
    # Constant time, so the answer's timing says nothing about how much of the token matched.
    if not hmac.compare_digest(token.strip().encode(), expected.get_secret_value().encode()):
        log.warning("admin refused: wrong token", extra={"path": request.url.path})
        raise Forbidden("the admin token is not valid")


class AdminRoute(APIRoute):
    """The token checked before anything reads the body: FastAPI parses a route's JSON body before its
    dependencies run, so a caller without the token could learn how the body is read. Then our own JSON parse,
    for the same ``invalid_json`` refusal (with line and column) as the prediction routes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            require_token(request)
            body = await request.body()  # kept by the request: FastAPI's own read below finds it
            if body:
                parse_json(body)
            return await handler(request)

        return guarded


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    route_class=AdminRoute,
    # HTTPBearer only declares the scheme in the OpenAPI document (and Swagger UI's Authorize button); auto_error off,
    # it refuses nothing: require_token (in AdminRoute) is the one check, constant time, with our error codes.
    dependencies=[Security(HTTPBearer(auto_error=False, description="MNIST_ADMIN_TOKEN"))],
    responses=error_responses(
        Unauthorized,
        Forbidden,
        VersionNotFound,
        AliasError,
        RegistryReadOnly,
        InvalidJSON,
        InvalidInput,
        InvalidVersion,
        ModelLoadError,
        ModelNotReady,
    ),
)


def _known_alias(alias: str) -> str:
    if alias not in layout.KNOWN_ALIASES:
        raise AliasError(f"unknown alias {alias[:40]!r}; use one of {list(layout.KNOWN_ALIASES)}")
    return alias


@router.post("/reload", summary="Load a version now (default: the production alias)")
async def reload(request: Request, body: ReloadIn | None = None) -> dict[str, Any]:
    ref = body.version if body else None
    version = await request.app.state.manager.reload(ref)
    log.info("admin reload", extra={"admin_action": "reload", "requested": ref, "model_version": version})
    return {"model_version": version}


async def _loadable(manager: Any, version: int) -> None:
    """An alias is moved from here only to a version this service loads: else every replica following it would
    refuse it (and a worker starting then would serve an earlier one), while the caller got a 500 for a move made."""
    await anyio.to_thread.run_sync(manager.registry.version_dir, version)  # not there: 404, not a load failure
    try:
        await manager.check_loads(version)
    except ModelLoadError as exc:
        raise ModelLoadError(f"no alias was moved: {exc.message}") from exc


@router.post("/promote", summary="Load a version as serving would, then point an alias at it; production is reloaded")
async def promote(request: Request, body: PromoteIn) -> dict[str, Any]:
    manager = request.app.state.manager
    alias = _known_alias(body.alias)
    await _loadable(manager, body.version)
    await anyio.to_thread.run_sync(lambda: manager.registry.promote(body.version, alias, reason="admin api"))
    log.info("admin promote", extra={"admin_action": "promote", "alias": alias, "version": body.version})
    # Reload what this replica is set to serve (MNIST_MODEL_REF); a no-op unless that alias moved.
    loaded = await manager.reload(None)
    return {"alias": alias, "version": body.version, "model_version": loaded}


@router.post("/rollback", summary="Point an alias back at its previous version")
async def rollback(request: Request, body: RollbackIn | None = None) -> dict[str, Any]:
    manager = request.app.state.manager
    alias = _known_alias(body.alias if body else layout.PRODUCTION)
    checked = None
    with contextlib.suppress(AliasError):  # nothing to go back to: rollback() says so, after its own checks
        checked = await anyio.to_thread.run_sync(manager.registry.rollback_target, alias)
        await _loadable(manager, checked)
    # Only to the version checked here: another rollback or promotion meanwhile is a 409, not a move to a version
    # nobody load-checked.
    target = await anyio.to_thread.run_sync(lambda: manager.registry.rollback(alias, expected=checked))
    log.info("admin rollback", extra={"admin_action": "rollback", "alias": alias, "version": target})
    loaded = await manager.reload(None)
    return {"alias": alias, "version": target, "model_version": loaded}
