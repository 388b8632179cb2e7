"""The OpenAPI document, as strict as the server: FastAPI's document plus the rules every operation shares.

Routes declare what is theirs: bodies, parameters, and the domain errors they raise
(``schemas.error_responses``). What holds for every operation is added here once, by rule rather than
route by route, so a new router (the Open Inference Protocol's ``/v2`` routes) gets it without a line here:

- every answer carries ``X-Request-ID`` (``access.py``), every 503 ``Retry-After`` (``errors.py``);
- every operation may answer 500 ``internal_error``; one that takes a body may also meet the limits'
  refusals before its handler runs (``limits.py``: 408, 413, 415);
- FastAPI's 422 ``HTTPValidationError`` is what the service never sends: it becomes the error envelope with
  ``invalid_input`` (``errors.py`` maps validation errors so);
- each error answer's codes (``x-error-codes``) become its description and one example per code;
- an array marked ``x-max-items-from: <setting>`` gets that setting's value as ``maxItems``.

The Open Inference Protocol's routes (``errors.speaks_oip``) answer every error as the protocol's bare
message: they get the same statuses in that shape, with no codes; the rules never rewrite an error answer
that lists no codes of ours.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from service import errors as svc
from service.api.errors import speaks_oip
from service.api.oip_schemas import OipErrorOut
from service.api.schemas import ERROR_CODES, ErrorOut, error_responses
from service.settings import Settings

OPENAPI_PATH = "/openapi.json"
ERROR_REF = f"#/components/schemas/{ErrorOut.__name__}"
OIP_ERROR_REF = f"#/components/schemas/{OipErrorOut.__name__}"
FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"
MAX_ITEMS_FROM = "x-max-items-from"
METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

REQUEST_ID = {
    "description": "The request's id: the caller's own X-Request-ID when it is 1-128 of [A-Za-z0-9._-], else a "
    "fresh one. The access log line of the request carries it.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"},
}
RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
# Any operation: an unexpected fault (the traceback goes to the log, never to the client).
EVERY_OPERATION = error_responses(RuntimeError)
# An operation that takes a body: refused by LimitsMiddleware before its handler reads a byte.
WITH_A_BODY = error_responses(
    svc.RequestTimeout, svc.PayloadTooLarge, svc.UnsupportedMediaType, svc.UnsupportedEncoding
)
VALIDATION = error_responses(svc.InvalidInput)
EXAMPLE_MESSAGE = "what was wrong, where, and what to send instead"


def install(app: FastAPI, settings: Settings) -> None:
    """``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) answers the strict document, built once."""
    generate = app.openapi
    built: dict[str, Any] = {}

    def strict_openapi() -> dict[str, Any]:
        if not built:
            # A copy: the rules below rewrite dicts a route's openapi_extra may share with every app built from it.
            built.update(strict(copy.deepcopy(generate()), settings))
        return built

    app.openapi = strict_openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the schema


def strict(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas.setdefault(ErrorOut.__name__, error_schema)
    for path, operation in _operations(document):
        responses = operation.setdefault("responses", {})
        # The protocol's routes answer every error, these included, as its bare message (errors.speaks_oip).
        as_openapi = _as_oip if speaks_oip(path) else _as_openapi
        for status, response in list(responses.items()):
            if _schema_ref(response) == FASTAPI_VALIDATION:
                responses[status] = as_openapi(VALIDATION[422])
        _merge(responses, EVERY_OPERATION, as_openapi)
        if "requestBody" in operation:
            _merge(responses, WITH_A_BODY, as_openapi)
        for status, response in responses.items():
            if ERROR_CODES in response:
                _describe_errors(response)
            headers = response.setdefault("headers", {})
            headers.setdefault("X-Request-ID", REQUEST_ID)
            if str(status) == "503":
                headers.setdefault("Retry-After", RETRY_AFTER)
    _fill_limits(document, settings)
    text = json.dumps(document)
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in text:
            schemas.pop(unused, None)
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    paths = document.get("paths", {})
    return [(path, op) for path, item in paths.items() for method, op in item.items() if method in METHODS]


def _schema_ref(response: dict[str, Any]) -> str | None:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def _as_openapi(response: dict[str, Any]) -> dict[str, Any]:
    """An ``error_responses`` entry (a pydantic model) as the OpenAPI response FastAPI would have written."""
    return {ERROR_CODES: list(response[ERROR_CODES]), "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}}


def _as_oip(response: dict[str, Any]) -> dict[str, Any]:
    """The same answer in the Open Inference Protocol's error shape, which carries no code."""
    return {"description": "The error message", "content": {"application/json": {"schema": {"$ref": OIP_ERROR_REF}}}}


def _merge(
    responses: dict[str, Any], extra: dict[int | str, dict[str, Any]], as_openapi: Callable[..., dict[str, Any]]
) -> None:
    for status, response in extra.items():
        present = responses.get(str(status))
        if present is None:
            responses[str(status)] = as_openapi(response)
        elif ERROR_CODES in present:
            present[ERROR_CODES] += [code for code in response[ERROR_CODES] if code not in present[ERROR_CODES]]


def _describe_errors(response: dict[str, Any]) -> None:
    codes = response[ERROR_CODES]
    response["description"] = "The error envelope; `error.code` is one of " + ", ".join(f"`{c}`" for c in codes)
    media = response.setdefault("content", {}).setdefault("application/json", {"schema": {"$ref": ERROR_REF}})
    media.pop("example", None)
    media["examples"] = {code: {"value": {"error": {"code": code, "message": EXAMPLE_MESSAGE}}} for code in codes}


def _fill_limits(node: Any, settings: Settings) -> None:
    """``maxItems`` from the running server's settings wherever a schema names one (``x-max-items-from``)."""
    if isinstance(node, dict):
        setting = node.pop(MAX_ITEMS_FROM, None)
        if setting is not None:
            node["maxItems"] = getattr(settings, setting)
        for value in node.values():
            _fill_limits(value, settings)
    elif isinstance(node, list):
        for value in node:
            _fill_limits(value, settings)
