"""The Open Inference Protocol (KServe v2) over HTTP, beside the service's own API.

Health, server and model metadata, readiness, and infer. Infer is one handler (for the model and
for a version of it) and takes the same path as ``/predict``: the body under the same limits (``app.py``),
the OIP tensor turned into 28x28 digits (``service.inputs.oip_input``), the model manager's batcher and
guards, and an answer as JSON or binary tensor data (``oip_answer``). Errors go through the one table
in ``errors.py``, which writes the protocol's ``{"error": "..."}`` under ``/v2``.

One model, ``mnist``, and one version: the one this replica serves (``MNIST_MODEL_REF``, hot-swapped
when the registry changes). Another registered version is not loaded here, so it answers 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from registry import ModelMetadata, layout
from service.api.access import MODEL_VERSION_HEADER
from service.api.oip_answer import BINARY_CONTENT_TYPE, infer_response, model_metadata, predict_all, served_model
from service.api.oip_schemas import (
    HEADER_LENGTH,
    MODEL_NAME_PATTERN,
    SERVED_NAMES,
    VERSION_PATTERN,
    InferResponseOut,
    ModelMetadataOut,
    ReadyOut,
    ServerMetadataOut,
    infer_openapi,
    oip_errors,
)
from service.api.routes_predict import PredictionRoute
from service.errors import ModelNotReady
from service.inputs.oip_input import header_length, parse_infer_request

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
infer_router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=PredictionRoute)

SERVER_NAME = "mnist-serving"
EXTENSIONS = ["binary_tensor_data"]
VERSION_HEADER = MODEL_VERSION_HEADER.decode()
# The patterns are documented, not enforced here: a name or version outside them is answered by served_model, as
# the infer routes answer it (404 model_not_found, 422 invalid_version), not by FastAPI's validation (a 422 in
# pydantic's words, counted as a refused input).
ModelName = Annotated[
    str,
    Path(
        description="Only `mnist` is served; any other is 404.",
        json_schema_extra={"enum": SERVED_NAMES, "pattern": MODEL_NAME_PATTERN},
    ),
]
Version = Annotated[
    str,
    Path(
        description="The version this replica serves; another is 404.", json_schema_extra={"pattern": VERSION_PATTERN}
    ),
]


def served(request: Request, model_name: str, version: str | None = None) -> tuple[ModelMetadata, int]:
    return served_model(request.app.state.manager, model_name, version)


@router.get("", summary="Server metadata", response_model=ServerMetadataOut)
async def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live", summary="The process answers (200)")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", summary="A model version is ready (200), else 503", responses=oip_errors(503))
async def ready(request: Request) -> dict[str, bool]:
    manager = request.app.state.manager
    if not manager.ready:
        raise ModelNotReady(manager.not_ready_reason or "the model is loading")
    return {"ready": True}


def _metadata(request: Request, model_name: str, version: str | None) -> dict[str, Any]:
    facts, number = served(request, model_name, version)
    return model_metadata(facts, number, request.app.state.manager.served_backend)


@router.get(
    "/models/{model_name}",
    summary="Model metadata: the version served, its input and outputs",
    response_model=ModelMetadataOut,
    responses=oip_errors(404, 503),
)
async def model(request: Request, model_name: ModelName) -> dict[str, Any]:
    return _metadata(request, model_name, None)


@router.get(
    "/models/{model_name}/versions/{version}",
    summary="Metadata of one version (only the one this replica serves)",
    response_model=ModelMetadataOut,
    responses=oip_errors(404, 422, 503),
)
async def model_version(request: Request, model_name: ModelName, version: Version) -> dict[str, Any]:
    return _metadata(request, model_name, version)


@router.get(
    "/models/{model_name}/ready",
    summary="The model is ready (200), else 404 or 503",
    response_model=ReadyOut,
    responses=oip_errors(404, 503),
)
async def model_ready(request: Request, model_name: ModelName) -> dict[str, Any]:
    served(request, model_name)
    return {"name": model_name, "ready": True}


@router.get(
    "/models/{model_name}/versions/{version}/ready",
    summary="The version is ready (200), else 404 or 503",
    response_model=ReadyOut,
    responses=oip_errors(404, 422, 503),
)
async def model_version_ready(request: Request, model_name: ModelName, version: Version) -> dict[str, Any]:
    served(request, model_name, version)
    return {"name": model_name, "ready": True}


INFER_DESCRIPTION = (
    "One input `image`: `FP32 [N,28,28,1]` on the model's scale (0..1, 1 = ink) or `UINT8 [N,28,28]` (0..255), "
    "N up to MNIST_MAX_BATCH_IMAGES, as JSON `data` or as binary tensor data after the JSON "
    f"(`{HEADER_LENGTH}`). Outputs: `probabilities` [N,10] by default, `features` when asked for; each as JSON or "
    "binary (`binary_data`, or `binary_data_output` for all). One refused image (blank, not a digit, suspected "
    "adversarial) fails the request with 422 naming its index."
)
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferResponseOut,
        "content": {BINARY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            HEADER_LENGTH: {"description": "With binary outputs: the JSON's length.", "schema": {"type": "integer"}},
            VERSION_HEADER: {"description": "The model version that answered.", "schema": {"type": "integer"}},
        },
    },
    **oip_errors(400, 404, 413, 415, 422, 503, 504),
}


async def infer(request: Request) -> Response:
    state = request.app.state
    pinned = request.path_params.get("version")
    facts, number = served(request, request.path_params["model_name"], pinned)
    role_by_name = {spec.name: role for role, spec in facts.outputs.items()}
    body = await request.body()
    oip = parse_infer_request(
        body,
        header_length(request.headers.get(HEADER_LENGTH), len(body)),
        input_name=facts.input.name,
        output_names=role_by_name,
        default_output=facts.outputs[layout.OUTPUT_PROBABILITIES].name,
        pixel_scale=facts.preprocessing.pixel_scale,
        max_images=state.settings.max_batch_images,
    )
    features = facts.outputs[layout.OUTPUT_FEATURES].name in oip.wants
    results = await predict_all(state, oip.images, features, number if pinned else None)
    version = results[0].model_version
    content, json_length = infer_response(
        oip,
        results,
        model_name=layout.MODEL_NAME,
        version=version,
        role_by_name=role_by_name,
        keep_probabilities=state.settings.return_probabilities,
    )
    headers = {VERSION_HEADER: str(version)}
    if json_length is None:
        return Response(content, media_type="application/json", headers=headers)
    headers[HEADER_LENGTH] = str(json_length)
    return Response(content, media_type=BINARY_CONTENT_TYPE, headers=headers)


INFER_PATHS = (("/models/{model_name}/infer", False), ("/models/{model_name}/versions/{version}/infer", True))
for _path, _versioned in INFER_PATHS:
    infer_router.add_api_route(
        _path,
        infer,
        methods=["POST"],
        summary="Infer (one handler for the model and for its served version)",
        description=INFER_DESCRIPTION,
        response_model=None,
        responses=INFER_RESPONSES,
        openapi_extra=infer_openapi(_versioned),
        name=f"infer{'_version' if _versioned else ''}",
    )
