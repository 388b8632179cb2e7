"""POST /predict and POST /predict/batch."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.access import set_model_version
from service.api.errors import entry_error
from service.api.input_forms import Slot, batch_images, single_image
from service.api.schemas import BatchOut, PredictionOut, error_responses, predict_request_body
from service.errors import ServiceError
from service.metrics import PREDICTIONS, confidence_band, tally
from service.settings import Settings

router = APIRouter(tags=["predict"])

INPUT_ERRORS = error_responses(400, 413, 415, 422, 503, 504)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))  # JSONResponse's options


# Numbers go out with a fixed count of decimals: "%.6f" rounds exactly as round(x, 6) does, and writing
# the answer as one format string costs a quarter of rounding and repr-ing each float (the hot path).
_WITHOUT_PROBABILITIES = '{"digit":%d,"confidence":%.2f,"model_version":%d}'


@functools.cache
def _with_probabilities(classes: int) -> str:
    numbers = ",".join(["%.6f"] * classes)
    return '{"digit":%d,"confidence":%.6f,"probabilities":[' + numbers + '],"model_version":%d}'


def prediction_json(prediction: Any, settings: Settings) -> bytes:
    """One answer as JSON: confidence and probabilities with six decimals. Without probabilities
    (``MNIST_RETURN_PROBABILITIES=false``) the confidence has two: model-extraction hygiene, since a
    full, precise probability vector is what a thief needs."""
    probabilities = prediction.probabilities
    written = probabilities if settings.return_probabilities else ()
    if not math.isfinite(prediction.confidence + sum(written)):  # probabilities are <= 1: the sum cannot overflow
        raise ValueError("Out of range float values are not JSON compliant")  # as json's allow_nan=False
    if not settings.return_probabilities:
        return (_WITHOUT_PROBABILITIES % (prediction.digit, prediction.confidence, prediction.model_version)).encode()
    template = _with_probabilities(len(probabilities))
    return (template % (prediction.digit, prediction.confidence, *probabilities, prediction.model_version)).encode()


def count(prediction: Any) -> None:
    band = confidence_band(float(prediction.confidence))
    tally(PREDICTIONS, prediction.digit, band, prediction.model_version)


async def _loaded_version(request: Request) -> int | None:
    # Only when every image of a batch was refused: the version being served, from memory.
    return request.app.state.manager.model_version


@router.post(
    "/predict",
    summary="Classify one digit",
    description=(
        "One digit as a JSON 28x28 array (0 = background, 255 = ink), a multipart upload in field `file`, "
        "or a raw PNG/JPEG body. Photos and drawings are normalised the way MNIST was made."
    ),
    response_model=None,
    responses={200: {"model": PredictionOut}, **INPUT_ERRORS},
    openapi_extra=predict_request_body(batch=False),
)
async def predict(request: Request) -> Response:
    state = request.app.state
    image = await single_image(request, state.settings, state.decode_executor)
    (result,) = await state.manager.predict(image[np.newaxis].astype(np.float32, copy=False))
    if isinstance(result, ServiceError):
        raise result
    set_model_version(request.scope, result.model_version)
    count(result)
    return Response(prediction_json(result, state.settings), media_type="application/json")


@router.post(
    "/predict/batch",
    summary="Classify several digits",
    description=(
        'Up to MNIST_MAX_BATCH_IMAGES images as JSON `{"images": [...]}` or as several multipart parts named '
        "`files`. Answers in order. An image refused on its own (undecodable, blank, not a digit) becomes an "
        'error entry `{"error": {...}}` in its slot and the others are still answered; a malformed request '
        "(bad JSON, wrong shape, too many images) fails as a whole."
    ),
    response_model=None,
    responses={200: {"model": BatchOut}, **INPUT_ERRORS},
    openapi_extra=predict_request_body(batch=True),
)
async def predict_batch(request: Request) -> Response:
    state = request.app.state
    slots: list[Slot] = await batch_images(request, state.settings, state.decode_executor)
    good = [i for i, slot in enumerate(slots) if isinstance(slot, np.ndarray)]
    answers: list[Any] = list(slots)
    if good:
        stacked = np.stack([slots[i] for i in good]).astype(np.float32, copy=False)
        for i, result in zip(good, await state.manager.predict(stacked), strict=True):
            answers[i] = result
            if not isinstance(result, ServiceError):
                count(result)
    version = next((a.model_version for a in answers if not isinstance(a, (ServiceError, np.ndarray))), None)
    if version is None:
        version = await _loaded_version(request)
    set_model_version(request.scope, version)
    entries = [
        _ENCODER.encode(entry_error(a)).encode() if isinstance(a, ServiceError) else prediction_json(a, state.settings)
        for a in answers
    ]
    body = b'{"predictions":[' + b",".join(entries) + b'],"model_version":' + _ENCODER.encode(version).encode() + b"}"
    return Response(body, media_type="application/json")


class PredictDirectRoute:
    """``POST /predict`` straight to its endpoint, past FastAPI's routing and per-request dependency machinery.

    Uploads, and the JSON bodies the JSON lane (``api.json_lane``) hands over, come this way. The route
    has no dependencies or parameters for that machinery to solve, yet it cost a sixth of the event
    loop's time per request. Installed inside the access and limits middleware,
    so ids, logs, metrics, body caps and content-type checks are the same; errors propagate to the
    access middleware, which answers them with the same envelope the app's handlers use. Any other
    method or path (405s, redirects, docs) takes the normal route; /docs still describes this one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == "/predict")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # as the router would set it: metrics label the route template
        response = await predict(Request(scope, receive))
        await response(scope, receive, send)
