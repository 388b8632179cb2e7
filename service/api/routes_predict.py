"""POST /predict and POST /predict/batch."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.access import set_model_version
from service.api.errors import entry_error
from service.api.inputs import Slot, batch_images, single_image
from service.api.schemas import BatchOut, PredictionOut, error_responses, predict_request_body
from service.errors import ServiceError
from service.metrics import PREDICTIONS, child, confidence_band
from service.settings import Settings

router = APIRouter(tags=["predict"])

INPUT_ERRORS = error_responses(400, 413, 415, 422, 503, 504)


def prediction_body(prediction: Any, settings: Settings) -> dict[str, Any]:
    confidence = float(prediction.confidence)
    body: dict[str, Any] = {"digit": int(prediction.digit)}
    if settings.return_probabilities:
        body["confidence"] = round(confidence, 6)
        body["probabilities"] = [round(float(p), 6) for p in prediction.probabilities]
    else:
        # Model-extraction hygiene: a full, precise probability vector is what a thief needs.
        body["confidence"] = round(confidence, 2)
    body["model_version"] = int(prediction.model_version)
    return body


_PREDICTION_JSON = '{"digit":%d,"confidence":%r,"probabilities":[%s],"model_version":%d}'
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))  # JSONResponse's options


def prediction_json(prediction: Any, settings: Settings) -> bytes:
    """``prediction_body`` as the bytes ``JSONResponse`` sends for it. The single-digit answer is the hot
    path, and ``json`` spent more time on the dict than on the numbers: written here directly instead."""
    if not settings.return_probabilities:
        return _ENCODER.encode(prediction_body(prediction, settings)).encode()
    confidence = round(float(prediction.confidence), 6)
    probabilities = [round(float(p), 6) for p in prediction.probabilities]
    if not math.isfinite(confidence + sum(probabilities)):  # probabilities are <= 1: the sum cannot overflow
        raise ValueError("Out of range float values are not JSON compliant")  # json's allow_nan=False
    numbers = ",".join(map(repr, probabilities))  # json writes a float as its repr
    return (_PREDICTION_JSON % (prediction.digit, confidence, numbers, prediction.model_version)).encode()


def count(prediction: Any) -> None:
    band = confidence_band(float(prediction.confidence))
    child(PREDICTIONS, prediction.digit, band, prediction.model_version).inc()


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
async def predict_batch(request: Request) -> JSONResponse:
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
    predictions = [
        entry_error(a) if isinstance(a, ServiceError) else prediction_body(a, state.settings) for a in answers
    ]
    return JSONResponse({"predictions": predictions, "model_version": version})


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
