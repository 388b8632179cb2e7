"""The one place that turns domain errors into HTTP answers.

Every error leaves the service as ``{"error": {"code": "...", "message": "..."}}``
with a stable ``code``; under ``/v2`` (the Open Inference Protocol) the same error,
with the same status, is the protocol's ``{"error": "message"}``. Server faults answer
a generic message (the traceback goes to the log, never to the client) so nothing
internal leaks.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from registry import errors as reg
from service import errors as svc
from service.metrics import REJECTED

log = logging.getLogger("service.api")

# Order matters only for subclasses; every entry is a leaf class here.
STATUS_BY_ERROR: dict[type[Exception], int] = {
    svc.PayloadTooLarge: 413,
    svc.UnsupportedMediaType: 415,
    svc.UnsupportedEncoding: 415,
    svc.RequestTimeout: 408,
    svc.UnsupportedImageFormat: 415,
    svc.InvalidMultipart: 400,
    svc.InvalidJSON: 400,
    svc.InvalidImage: 400,
    svc.ImageTooLarge: 400,
    svc.MultiFrameImage: 400,
    svc.DecodeTimeout: 400,
    svc.InvalidInput: 422,
    svc.TooManyImages: 422,
    svc.UnknownInclude: 422,
    svc.ModelNotFound: 404,
    svc.NoDigit: 422,
    svc.NotADigit: 422,
    svc.SuspectedAdversarial: 422,
    svc.QueueFull: 503,
    svc.DeadlineExceeded: 504,
    svc.ModelNotReady: 503,
    svc.DeviceUnavailable: 503,
    svc.ModelLoadError: 500,
    svc.InferenceError: 500,
    svc.Unauthorized: 401,
    svc.Forbidden: 403,
}

# Registry errors carry no code of their own; these are the public ones.
REGISTRY_ERRORS: dict[type[Exception], tuple[int, str]] = {
    reg.VersionNotFound: (404, "version_not_found"),
    reg.InvalidVersion: (422, "invalid_version"),
    reg.FileNotPublished: (404, "file_not_found"),
    reg.AliasError: (409, "alias_error"),
    # Not 503: retrying cannot help while the volume is mounted read-only; 409 is gRPC's FAILED_PRECONDITION.
    reg.RegistryReadOnly: (409, "registry_read_only"),
    reg.CorruptVersion: (500, "corrupt_version"),
}

# The same errors over gRPC (the Open Inference Protocol's gRPC form): the HTTP status -> grpc.StatusCode name.
GRPC_CODE_BY_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "FAILED_PRECONDITION",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

INTERNAL_MESSAGE = "internal server error; the request id in X-Request-ID identifies it in the logs"


OIP_PREFIX = "/v2"


def speaks_oip(path: str) -> bool:
    """Whether a request path belongs to the Open Inference Protocol, whose error body is a bare message."""
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def envelope(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, *, oip: bool = False
) -> JSONResponse:
    body = {"error": message} if oip else {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


# 4xx answers that refuse no input: auth, routing and registry look-ups stay out of the refusal counter.
NOT_INPUT_REFUSALS = frozenset(
    {
        "unauthorized",
        "forbidden",
        "not_found",
        "model_not_found",
        "method_not_allowed",
        "version_not_found",
        "file_not_found",
        "invalid_version",
        "alias_error",
        "registry_read_only",
    }
)


def count_rejection(status: int, code: str) -> None:
    """Input refusals feed mnist_rejected_inputs_total, the signal behind the refusal-share alerts."""
    if 400 <= status < 500 and code not in NOT_INPUT_REFUSALS:
        REJECTED.labels(reason=code).inc()


def describe(exc: Exception) -> tuple[int, str, str, dict[str, str] | None]:
    """Status, code, message and extra headers for any exception."""
    if isinstance(exc, svc.ServiceError):
        status = next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 500)
        headers = None
        if status == 503:  # every 503 says when to try again (the OpenAPI schema promises it)
            headers = {"Retry-After": str(max(1, int(getattr(exc, "retry_after_s", 1))))}
        elif isinstance(exc, svc.Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
        if status == 500 and type(exc) is svc.ServiceError:
            return 500, "internal_error", INTERNAL_MESSAGE, None
        return status, exc.code, exc.message, headers
    for cls, (status, code) in REGISTRY_ERRORS.items():
        if isinstance(exc, cls):
            return status, code, str(exc), None
    return 500, "internal_error", INTERNAL_MESSAGE, None


def refusal(exc: Exception) -> tuple[int, str, str, dict[str, str] | None]:
    """``describe``, with what every refused request gets over HTTP and gRPC alike: a count, and for a 5xx an
    error line (a traceback only for a fault nothing mapped: a full queue is no bug)."""
    status, code, message, headers = describe(exc)
    if status >= 500 and code == "internal_error":
        log.error("unhandled error", exc_info=(type(exc), exc, exc.__traceback__))
    elif status >= 500:
        log.error("server fault", extra={"code": code, "detail": message})
    count_rejection(status, code)
    return status, code, message, headers


def error_response(exc: Exception, *, oip: bool = False) -> JSONResponse:
    status, code, message, headers = refusal(exc)
    return envelope(status, code, message, headers, oip=oip)


def entry_error(exc: Exception) -> dict[str, Any]:
    """The per-image error inside a batch answer (counted like a whole refusal)."""
    _, code, message, _ = refusal(exc)
    return {"error": {"code": code, "message": message}}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for item in exc.errors()[:3]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        # A validator's own ValueError arrives as "Value error, <its message>": pydantic's wording, not ours.
        parts.append(f"{where}: {str(item.get('msg', 'invalid')).removeprefix('Value error, ')}")
    return "; ".join(parts) or "invalid request"


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, oip=speaks_oip(request.url.path))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    count_rejection(422, "invalid_input")
    return envelope(422, "invalid_input", _validation_message(exc), oip=speaks_oip(request.url.path))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    oip = speaks_oip(request.url.path)
    if isinstance(exc.__cause__, svc.ServiceError):
        # FastAPI wraps errors raised while it reads a body (our byte cap) in a plain 400.
        return error_response(exc.__cause__, oip=oip)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        # FastAPI's own JSON body parsing (the admin routes) fails so on bytes that are not UTF-8: the same refusal,
        # and code, as a prediction route's malformed JSON.
        return error_response(svc.InvalidJSON("the body is not valid JSON (not UTF-8 text)"), oip=oip)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "payload_too_large"}
    code = codes.get(exc.status_code, f"http_{exc.status_code}")
    message = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(exc.status_code)
    count_rejection(exc.status_code, code)
    headers = dict(exc.headers) if exc.headers else None
    return envelope(exc.status_code, code, message or str(exc.detail)[:200], headers, oip=oip)


def install(app: FastAPI) -> None:
    app.add_exception_handler(svc.ServiceError, _on_service_error)
    app.add_exception_handler(reg.RegistryError, _on_service_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    # Registered for Exception, Starlette runs this in its outermost middleware: last line of defence.
    app.add_exception_handler(Exception, _on_service_error)
