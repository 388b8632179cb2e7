"""An Open Inference Protocol (KServe v2) infer request -> 28x28 digits and the outputs asked for.

The body is the protocol's JSON, optionally followed by binary tensor data (Triton's binary tensor data
extension: the JSON's length comes in the ``Inference-Header-Content-Length`` header, each input's bytes
follow in order, its size in ``parameters.binary_data_size``). The one input is the model's (its name from
the version's metadata), ``FP32`` on the model's own scale (0..1 with the pixel scale the metadata gives)
or ``UINT8`` 0..255, shaped ``[N, 28, 28, 1]`` or ``[N, 28, 28]``. Images leave here as the MNIST
convention the batcher takes, float32 0..255, like every other input form. Pure: domain errors only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from registry.layout import IMAGE_SIDE
from service.errors import InvalidInput, InvalidJSON, NoDigit, TooManyImages
from service.inputs.json_input import NUMBER_TYPES, check_list_count, kind, malformed
from service.inputs.normalise import check_not_blank

# The protocol's datatype names for what this service takes and writes.
DATATYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
PIXELS = IMAGE_SIDE * IMAGE_SIDE
IMAGE_DIMS = ([IMAGE_SIDE, IMAGE_SIDE, 1], [IMAGE_SIDE, IMAGE_SIDE])  # a shape's dimensions after N
MAX_DIMS = 1 + max(map(len, IMAGE_DIMS))
# The parameters the protocol defines for a requested output; any other is ignored, as Triton does.
OUTPUT_PARAMETERS = ("binary_data", "classification")


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool  # written as binary tensor data after the JSON, not as a JSON list


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    images: np.ndarray  # [N, 28, 28] float32 0..255, bright ink
    outputs: tuple[RequestedOutput, ...]

    @property
    def wants(self) -> frozenset[str]:
        return frozenset(output.name for output in self.outputs)


def header_length(value: str | None, body_size: int) -> int | None:
    """The JSON part's length from ``Inference-Header-Content-Length`` (None: the whole body is JSON)."""
    if value is None:
        return None
    text = value.strip()
    # isascii: str.isdigit also takes digits int() refuses, such as a superscript two. The length before int():
    # int() refuses more than 4,300 digits with a ValueError (a 500), and a few thousand cost it time.
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(body_size))
    if not digits or not 0 < int(text) <= body_size:
        raise InvalidInput(f"Inference-Header-Content-Length must be an integer in 1..{body_size} (the body's size)")
    return int(text)


def parse_infer_request(
    body: bytes,
    json_length: int | None,
    *,
    input_name: str,
    output_names: Collection[str],
    default_output: str,
    pixel_scale: float,
    max_images: int,
) -> InferRequest:
    """The request's images and outputs; InvalidJSON / InvalidInput / TooManyImages / NoDigit say what is wrong."""
    header, binary = (body, b"") if json_length is None else (body[:json_length], body[json_length:])
    if not header:
        raise InvalidJSON("empty body; send an inference request (a JSON object with 'inputs')")
    check_list_count(header, max_images)
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        # Binary tensor data read as JSON is no UTF-8: the header that says where the JSON ends is the likelier slip.
        hint = "; binary tensor data after the JSON needs the Inference-Header-Content-Length header"
        raise malformed(exc, hint if json_length is None else "") from exc
    if not isinstance(doc, dict):
        raise InvalidInput("the inference request must be a JSON object with 'inputs'")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(f"'inputs' must be a list of one tensor, {input_name!r}")
    tensor = inputs[0]
    size = _object(tensor.get("parameters"), "inputs[0].parameters").get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InvalidInput("parameter 'binary_data_size' must be a whole number of bytes")
    if size is not None and size != len(binary):
        raise InvalidInput(f"binary_data_size is {size} but {len(binary)} bytes follow the JSON")
    if size is None and binary:
        raise InvalidInput("binary data after the JSON, but the input has no 'binary_data_size' parameter")
    if size is not None and "data" in tensor:  # which of the two did the client mean? data was ignored
        raise InvalidInput("the input has both 'data' and binary data ('binary_data_size'); send its values once")
    images = tensor_images(
        tensor.get("name"),
        tensor.get("datatype"),
        tensor.get("shape"),
        raw=binary if size is not None else None,
        data=tensor.get("data"),
        input_name=input_name,
        pixel_scale=pixel_scale,
        max_images=max_images,
    )
    defaults = _object(doc.get("parameters"), "parameters")
    binary_default = _flag(defaults, "binary_data_output")
    outputs = requested_outputs(doc.get("outputs"), output_names, default_output, binary_default)
    return InferRequest(request_id, images, outputs)


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"'{where}' must be a JSON object")
    return value


def _flag(parameters: dict[str, Any], name: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"parameter {name!r} must be true or false")
    return value


def _shown(value: Any, limit: int) -> str:
    """A client's value for a message: a string cut to ``limit`` characters, anything else by its kind only.

    str() of a list walks all of it: past ~1,000 nesting levels it raises RecursionError, and a long one costs
    its whole repr before the cut."""
    if isinstance(value, str):
        return repr(value[:limit])
    return f"({kind(value)}, not a string)"


def _is_list(value: Any) -> bool:
    """A JSON list, or a protobuf repeated field (gRPC): a sequence whose len() is known before it is read."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _shape(shape: Any, max_images: int) -> int:
    """The image count of a ``[N, 28, 28, 1]`` or ``[N, 28, 28]`` shape."""
    if not _is_list(shape):
        raise InvalidInput("input 'shape' must be a list of integers")
    if len(shape) > MAX_DIMS:  # counted, not read: a client's long list is neither walked nor echoed
        raise _wrong_shape(f"{len(shape)} dimensions")
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInput("input 'shape' must be a list of integers")
    dims = list(shape)
    if dims[1:] not in IMAGE_DIMS or dims[0] < 1:
        raise _wrong_shape(str(dims))
    if dims[0] > max_images:
        raise TooManyImages(f"{dims[0]} images in one request; at most {max_images} (MNIST_MAX_BATCH_IMAGES)")
    return dims[0]


def _wrong_shape(got: str) -> InvalidInput:
    side = IMAGE_SIDE
    return InvalidInput(f"input shape must be [N, {side}, {side}, 1] or [N, {side}, {side}], N >= 1; got {got}")


def tensor_images(
    name: Any,
    datatype: Any,
    shape: Any,
    *,
    raw: bytes | None,
    data: Any,
    input_name: str,
    pixel_scale: float,
    max_images: int,
) -> np.ndarray:
    """One input tensor -> [N, 28, 28] float32 0..255: from raw little-endian bytes (binary data over HTTP,
    ``raw_input_contents`` over gRPC) or from a list of numbers (JSON ``data``, gRPC ``contents``)."""
    if name != input_name:
        raise InvalidInput(f"unknown input {_shown(name, 40)}; the model's one input is {input_name!r}")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInput(f"input datatype must be FP32 (0..1) or UINT8 (0..255), got {_shown(datatype, 20)}")
    n = _shape(shape, max_images)
    dtype = DATATYPES[datatype]
    if raw is not None:
        expected = n * PIXELS * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInput(f"{n} {datatype} images are {expected} bytes of binary data; got {len(raw)} bytes")
        values = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    else:
        values = _json_values(data, n)
    if datatype == "FP32":
        # min and max are NaN when any value is, and NaN fails both comparisons: no separate isfinite pass.
        if not (values.min() >= 0 and values.max() <= 1):
            raise InvalidInput("FP32 image values must be finite and in 0..1 (1 = ink); send UINT8 for 0..255")
        values = values * np.float32(1.0 / pixel_scale)  # the model's scale back to the 0..255 every form uses
    elif values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.rint(values)):
        raise InvalidInput("UINT8 image values must be whole numbers in 0..255")
    images = values.reshape(n, IMAGE_SIDE, IMAGE_SIDE)
    for i, image in enumerate(images):
        try:
            check_not_blank(image)
        except NoDigit as exc:
            raise NoDigit(f"image {i}: {exc.message}") from None
    return images


def _json_values(data: Any, n: int) -> np.ndarray:
    """A flat or nested list of numbers (JSON ``data``, gRPC ``contents``) -> float32 [n * 784]."""
    if not _is_list(data):
        raise InvalidInput("input 'data' must be a list of numbers (flat or nested), or send binary data")
    needed = n * PIXELS
    # Counted before any value is read: asarray's walk of a 4 MiB body of nested empty lists was 1.2 s of CPU.
    count = _nested_count(data, needed)
    if count > needed:
        raise InvalidInput(f"input 'data' has more than the {needed} values the shape needs")
    if count < needed:
        raise InvalidInput(f"input 'data' has {count} values; the shape needs {needed}")
    # A flat list (what tritonclient sends) skips numpy's shape discovery.
    flat = data if not isinstance(data[0], list) else _flattened(data)
    # One type scan, as /predict's JSON has: fromiter and asarray take "12", " 12 " and true as numbers.
    if len(flat) != needed or not set(map(type, flat)) <= NUMBER_TYPES:
        raise InvalidInput("input 'data' must hold numbers only, as a flat list or nested to the shape")
    return np.fromiter(flat, dtype=np.float32, count=needed)  # orjson refuses a number past a double's range


def _nested_count(data: Sequence[Any], most: int) -> int:
    """How many values ``data`` holds, reading one item per level: exact for a flat list or a regular nesting
    (a ragged one is refused later); past ``most`` it stops counting."""
    count, level = 1, data
    while _is_list(level):
        count *= len(level)
        if not level or count > most:
            break
        level = level[0]
    return count


def _flattened(data: Sequence[Any]) -> Sequence[Any]:
    """A nested list's items in order, as numpy stacks them; a ragged part stays a list, which the type scan
    refuses. dtype object: the values as sent, not yet converted, for that scan."""
    try:
        return np.asarray(data, dtype=object).reshape(-1)
    except ValueError:  # lists numpy cannot stack at all
        return ()


def requested_outputs(
    requested: Any, names: Collection[str], default_output: str, binary_default: bool = False
) -> tuple[RequestedOutput, ...]:
    """The outputs asked for (``[{"name": ..., "parameters": {...}}]``, None for the default one), checked."""
    if requested is None:
        return (RequestedOutput(default_output, binary_default),)
    if not isinstance(requested, list) or not requested:
        raise InvalidInput("'outputs' must be a non-empty list of objects with a 'name'")
    if len(requested) > len(names):  # before any item is read: a long list is a client's mistake, refused as one
        raise InvalidInput(f"more outputs requested than the model has, {sorted(names)}; each may be asked for once")
    if not all(isinstance(o, dict) for o in requested):
        raise InvalidInput("'outputs' must be a non-empty list of objects with a 'name'")
    outputs = []
    for item in requested:
        name = item.get("name")
        if not isinstance(name, str) or name not in names:
            raise InvalidInput(f"unknown output {_shown(name, 40)}; the model's outputs are {sorted(names)}")
        parameters = _object(item.get("parameters"), "outputs[].parameters")
        if "classification" in parameters:
            raise InvalidInput("the classification extension is not supported; read the probabilities")
        binary = _flag(parameters, "binary_data") if "binary_data" in parameters else binary_default
        outputs.append(RequestedOutput(name, binary))
    if len({o.name for o in outputs}) != len(outputs):
        raise InvalidInput("each output may be requested once")
    return tuple(outputs)
