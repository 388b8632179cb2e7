"""The Open Inference Protocol, whatever carries it (HTTP or gRPC): which model is served, the one
inference step, and the answers (model metadata, infer responses as JSON or binary tensor data).

Tensor facts (names, shapes, the input's datatype) come from the served version's metadata.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from registry import ModelMetadata, VersionNotFound, layout, parse_version
from service.api.routes_predict import count_prediction
from service.errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady, ServiceError
from service.inference.answers import named
from service.inputs.oip_input import InferRequest

# A free dimension, as the protocol writes it.
ANY = -1
DATATYPE_BY_DTYPE = {"float32": "FP32"}
# The platform Triton names for each backend, so a client sees what the version folder holds.
PLATFORM_BY_BACKEND = {"onnx": "onnxruntime_onnx", "savedmodel": "tensorflow_savedmodel"}
BINARY_CONTENT_TYPE = "application/octet-stream"


def served_model(manager: Any, model_name: str, version: str | None = None) -> tuple[ModelMetadata, int]:
    """The served version's facts and number, if the request names it; else ModelNotFound / VersionNotFound."""
    if model_name != layout.MODEL_NAME:
        raise ModelNotFound(f"unknown model {model_name[:64]!r}; this server serves {layout.MODEL_NAME!r}")
    current = manager.model_version
    if current is None or not manager.ready:
        raise ModelNotReady(manager.not_ready_reason or "the model is loading")
    if version and parse_version(version) != current:  # gRPC's empty version means "the model's"
        raise VersionNotFound(f"version {version} of {model_name!r} is not loaded here; this replica serves {current}")
    return manager.served_facts, current


async def predict_all(state: Any, images: np.ndarray, features: bool, pinned: int | None = None) -> list[Any]:
    """Every image answered through the batcher and guards, or the first refusal raised (it names the index).

    A request that names its version (``pinned``) is answered by that version or refused: a swap may land while
    its body arrives or its batch waits."""
    if features and not state.settings.return_probabilities:
        raise InvalidInput("the 'features' output is withheld by this server (MNIST_RETURN_PROBABILITIES=false)")
    results = await state.manager.predict(images, features=features)
    refused = next(((i, r) for i, r in enumerate(results) if isinstance(r, ServiceError)), None)
    if refused is not None:
        raise named(refused[1], f"image {refused[0]}")
    if pinned is not None and results[0].model_version != pinned:
        raise VersionNotFound(f"version {pinned} was swapped out; this replica serves {results[0].model_version}")
    for result in results:
        count_prediction(result)
    return results


def _shape(shape: tuple[int | None, ...] | None, fallback_rank: int) -> list[int]:
    if shape is None:
        return [ANY] * fallback_rank
    return [ANY if d is None else int(d) for d in shape]


def model_metadata(facts: ModelMetadata, version: int, backend: str) -> dict[str, Any]:
    outputs = [
        {"name": spec.name, "datatype": "FP32", "shape": _shape(spec.shape, 2)}
        for role, spec in facts.outputs.items()
        if role in (layout.OUTPUT_PROBABILITIES, layout.OUTPUT_FEATURES)
    ]
    return {
        "name": facts.name,
        "versions": [str(version)],
        "platform": PLATFORM_BY_BACKEND.get(backend, backend),
        "inputs": [
            {
                "name": facts.input.name,
                "datatype": DATATYPE_BY_DTYPE.get(facts.input.dtype, facts.input.dtype.upper()),
                "shape": _shape(facts.input.shape, 4),
            }
        ],
        "outputs": outputs,
    }


def output_tensor(predictions: list[Any], role: str, keep_probabilities: bool) -> np.ndarray:
    """One output as FP32 [N, ...]: ``probabilities`` or ``features``."""
    if role == layout.OUTPUT_FEATURES:
        tensor = np.stack([p.features for p in predictions]).astype(np.float32, copy=False)
    else:
        tensor = np.asarray([p.probabilities for p in predictions], dtype=np.float32)
        if not keep_probabilities:  # MNIST_RETURN_PROBABILITIES=false: as coarse as /predict's confidence
            tensor = np.round(tensor, 2)
    if not np.isfinite(tensor).all():  # a broken model must fail (500), not answer NaN
        raise InferenceError("the model returned non-finite values")
    return tensor


def infer_response(
    request: InferRequest,
    predictions: list[Any],
    *,
    model_name: str,
    version: int,
    role_by_name: dict[str, str],
    keep_probabilities: bool,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when binary tensor data follows it (else None)."""
    outputs, blobs = [], []
    for wanted in request.outputs:
        tensor = output_tensor(predictions, role_by_name[wanted.name], keep_probabilities)
        entry: dict[str, Any] = {"name": wanted.name, "datatype": "FP32", "shape": list(tensor.shape)}
        if wanted.binary:
            raw = tensor.astype("<f4", copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = tensor.reshape(-1)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": str(version), "outputs": outputs}
    if request.id is not None:
        doc["id"] = request.id
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
