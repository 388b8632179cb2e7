"""POST /predict and POST /predict/batch: the whole prediction path of the HTTP layer.

A request has already passed the access log and the limits (``app.py``). Here:
the input form is decided and turned into 28x28 arrays (``input_forms``), the
model manager answers through the batcher, and the answer is written with
orjson. The served version goes back in the ``X-Model-Version`` header, where
the access line and the request metrics read it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from digits.softening import soften
from service import errors as svc
from service.api.access import MODEL_VERSION_HEADER
from service.api.errors import entry_error
from service.api.input_forms import Slot, batch_images, single_image
from service.api.schemas import BatchOut, PredictionOut, error_responses, predict_request_body
from service.errors import InferenceError, ServiceError, UnknownInclude
from service.inference.answers import named
from service.metrics import PREDICTIONS, confidence_band
from service.settings import Settings


class PredictionRoute(APIRoute):
    """A route FastAPI documents from its decorator and serves by calling the endpoint with the request alone.

    The prediction endpoints take the request and nothing else (they read and check their bodies
    themselves) and raise only errors the app's handlers map. So FastAPI's per-request machinery has
    nothing to do for them: dependency solving, the two exit stacks and the second exception wrapper of
    its ``request_response``. ``app.py`` adds these routes to the app's own router, first, so the included
    routers' extra matching is skipped too. What that saves is measured in benchmarks/README.md; a unit
    test fails if a FastAPI upgrade routes these requests around ``self.app``.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await endpoint(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app


router = APIRouter(tags=["predict"], route_class=PredictionRoute)

# What a prediction request can be refused with as a whole; the body limits' refusals are added to every operation
# with a body (service/api/openapi.py).
REQUEST_ERRORS = (
    svc.InvalidJSON,
    svc.InvalidInput,
    svc.InvalidMultipart,
    svc.UnknownInclude,
    svc.QueueFull,
    svc.ModelNotReady,
    svc.DeadlineExceeded,
    svc.InferenceError,
)
VERSION_HEADER = MODEL_VERSION_HEADER.decode()
ANSWER_HEADERS = {"X-Model-Version": {"description": "The model version that answered.", "schema": {"type": "integer"}}}

# What ``?include=`` may add to an answer: ``input``, the normalised 28x28 the model was given (0..255).
INCLUDE_INPUT = "input"
INCLUDES = frozenset({INCLUDE_INPUT})
NOTHING_INCLUDED: frozenset[str] = frozenset()
INCLUDE_PARAMETER = {
    "name": "include",
    "in": "query",
    "required": False,
    "description": (
        "Opt-in extras, comma-separated or repeated. `input` adds `input` to each answer: the normalised 28x28 "
        "image the model was given (softened, as every input is), integers 0..255 (0 = background, 255 = ink). "
        "Any other value is refused with 422 `unknown_include`."
    ),
    "schema": {"type": "array", "items": {"type": "string", "enum": sorted(INCLUDES)}, "minItems": 1},
    "style": "form",
    "explode": False,
}


def requested_includes(request: Request) -> frozenset[str]:
    """The ``include`` values of the query string; an unknown one is refused before the body is read.

    Most requests carry no query string: they pay one scope lookup, not a query parse.
    """
    if not request.scope.get("query_string"):
        return NOTHING_INCLUDED
    wanted = {item for value in request.query_params.getlist("include") for item in value.split(",")}
    unknown = sorted(wanted - INCLUDES)
    if unknown:
        raise UnknownInclude(f"unknown include value {unknown[0][:40]!r}; the only one is {INCLUDE_INPUT!r}")
    return frozenset(wanted)


def shown_input(image: np.ndarray, softening: float) -> np.ndarray:
    """The 28x28 the model was given (``?include=input``), softened as every input is, as whole numbers 0..255:
    the form a client can draw (orjson writes the array as lists)."""
    soft = soften(image[np.newaxis], softening)[0]
    return np.ascontiguousarray(np.clip(np.rint(soft), 0, 255).astype(np.uint8))


def answering_softening(manager: Any) -> float:
    """The softening of the version that will answer: read right before ``manager.predict``, which takes the served
    version before its first await, so a hot swap while the answer is computed cannot change it."""
    return float(manager.preprocessing.softening)


def prediction_answer(prediction: Any, settings: Settings) -> dict[str, Any]:
    """One answer: confidence and probabilities rounded to six decimals. Without probabilities
    (``MNIST_RETURN_PROBABILITIES=false``) the confidence has two: model-extraction hygiene, since a
    full, precise probability vector is what a thief needs."""
    if not settings.return_probabilities:
        confidence = round(prediction.confidence, 2)
        if not math.isfinite(confidence):
            raise InferenceError("the model returned a non-finite confidence")
        return {"digit": prediction.digit, "confidence": confidence, "model_version": prediction.model_version}
    probabilities = [round(p, 6) for p in prediction.probabilities]
    if not math.isfinite(sum(probabilities)):  # orjson would write NaN as null: a broken model must fail (500)
        raise InferenceError("the model returned non-finite probabilities")
    return {
        "digit": prediction.digit,
        "confidence": round(prediction.confidence, 6),
        "probabilities": probabilities,
        "model_version": prediction.model_version,
    }


def count_prediction(prediction: Any) -> None:
    """mnist_predictions_total, for every answered image whatever the protocol."""
    band = confidence_band(float(prediction.confidence))
    PREDICTIONS.labels(prediction.digit, band, prediction.model_version).inc()


def _json(body: dict[str, Any], version: int | None) -> Response:
    headers = {VERSION_HEADER: str(version)} if version is not None else None
    # OPT_SERIALIZE_NUMPY writes an included 28x28 straight from its array; without one it changes nothing.
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json", headers=headers
    )


@router.post(
    "/predict",
    summary="Classify one digit",
    description=(
        "One digit as a JSON 28x28 array (0 = background, 255 = ink), a multipart upload in field `file`, "
        "or a raw PNG/JPEG body. Photos and drawings are normalised the way MNIST was made.\n\n"
        "A picture from the command line: `curl -F file=@digit.png http://127.0.0.1:8000/predict`, or "
        "`curl --data-binary @digit.png -H 'Content-Type: image/png' http://127.0.0.1:8000/predict`."
    ),
    response_model=None,
    responses={
        200: {"model": PredictionOut, "headers": ANSWER_HEADERS},
        **error_responses(*REQUEST_ERRORS, svc.TooManyImages, *svc.IMAGE_ERRORS),
    },
    openapi_extra={**predict_request_body(batch=False), "parameters": [INCLUDE_PARAMETER]},
)
async def predict(request: Request) -> Response:
    state = request.app.state
    includes = requested_includes(request)
    image = await single_image(request, state.decoder)
    softening = answering_softening(state.manager) if includes else 0.0
    (result,) = await state.manager.predict(image[np.newaxis])
    if isinstance(result, ServiceError):
        raise named(result, "the image")
    answer = prediction_answer(result, state.settings)
    if includes:
        answer[INCLUDE_INPUT] = shown_input(image, softening)
    count_prediction(result)
    return _json(answer, result.model_version)


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
    responses={
        200: {"model": BatchOut, "headers": ANSWER_HEADERS},
        **error_responses(*REQUEST_ERRORS, svc.TooManyImages),
    },
    openapi_extra={**predict_request_body(batch=True), "parameters": [INCLUDE_PARAMETER]},
)
async def predict_batch(request: Request) -> Response:
    state = request.app.state
    includes = requested_includes(request)
    # Several pictures decode side by side on the pool, whatever their size.
    settings = state.settings
    slots: list[Slot] = await batch_images(
        request, state.decoder.on_pool, settings.max_batch_images, settings.max_image_pixels
    )
    good = [i for i, slot in enumerate(slots) if isinstance(slot, np.ndarray)]
    results: list[Any] = list(slots)
    softening = answering_softening(state.manager) if includes and good else 0.0
    if good:
        stacked = np.stack([slots[i] for i in good])
        # The model sees only the images that decoded: its refusals are named by their slot in the request.
        for i, result in zip(good, await state.manager.predict(stacked), strict=True):
            results[i] = named(result, f"image {i}") if isinstance(result, ServiceError) else result
    # Every image refused: the version being served, from memory; none served: the service cannot answer yet, and
    # the request is refused as a whole before any of its images is counted as refused.
    answered = (result.model_version for result in results if not isinstance(result, ServiceError))
    version = next(answered, state.manager.model_version)
    if version is None:
        raise svc.ModelNotReady(state.manager.not_ready_reason or "no model version loaded")
    entries = []
    for slot, result in zip(slots, results, strict=True):
        if isinstance(result, ServiceError):
            entries.append(entry_error(result))
        else:
            entry = prediction_answer(result, state.settings)
            if includes and isinstance(slot, np.ndarray):
                entry[INCLUDE_INPUT] = shown_input(slot, softening)
            entries.append(entry)
            count_prediction(result)
    return _json({"predictions": entries, "model_version": version}, version)
