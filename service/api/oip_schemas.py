"""The Open Inference Protocol's shapes for the OpenAPI document (routes_oip builds its answers by hand)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from registry.layout import MODEL_NAME
from service.api.schemas import example_digit

MODEL_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
SERVED_NAMES = [MODEL_NAME]  # the schema names the one model served; the pattern still guards what is parsed
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"  # versions start at 1 (registry)
HEADER_LENGTH = "Inference-Header-Content-Length"


class OipErrorOut(BaseModel):
    error: str = Field(examples=["image 0 does not look like a handwritten digit"])


class ServerMetadataOut(BaseModel):
    name: str = Field(examples=["mnist-serving"])
    version: str = Field(examples=["1.0"])
    extensions: list[str] = Field(examples=[["binary_tensor_data"]])


class TensorMetadataOut(BaseModel):
    name: str = Field(examples=["image"])
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(description="-1 for a free dimension (the batch).", examples=[[-1, 28, 28, 1]])


class ModelMetadataOut(BaseModel):
    name: str = Field(examples=["mnist"])
    versions: list[str] = Field(description="The version this replica serves.", examples=[["3"]])
    platform: str = Field(examples=["onnxruntime_onnx"])
    inputs: list[TensorMetadataOut]
    outputs: list[TensorMetadataOut]


class ReadyOut(BaseModel):
    name: str = Field(examples=["mnist"])
    ready: bool


class OutputTensorOut(BaseModel):
    name: str = Field(examples=["probabilities"])
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(examples=[[1, 10]])
    data: list[float] | None = Field(None, description="Absent when the output is sent as binary data.")
    parameters: dict[str, Any] | None = Field(None, description='{"binary_data_size": bytes} for binary data.')


class InferResponseOut(BaseModel):
    model_name: str = Field(examples=["mnist"])
    model_version: str = Field(examples=["3"])
    id: str | None = None
    outputs: list[OutputTensorOut]


def oip_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": OipErrorOut} for status in statuses}


def path_parameter(name: str, pattern: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "pattern": pattern, "maxLength": 64}
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


MODEL_NAME_PARAMETER = path_parameter("model_name", MODEL_NAME_PATTERN, "Only `mnist` is served; any other is 404.")
MODEL_NAME_PARAMETER["schema"]["enum"] = SERVED_NAMES
VERSION_PARAMETER = path_parameter("version", VERSION_PATTERN, "The version this replica serves; another is 404.")

_TENSOR_IN = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "enum": ["image"]},
        "datatype": {"type": "string", "enum": ["FP32", "UINT8"]},
        "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 4},
        "data": {"type": "array", "items": {}, "description": "Numbers, flat or nested; absent with binary data."},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 1}}},
    },
}
_OUTPUT_IN = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "enum": ["probabilities", "features"]},
        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
    },
}
INFER_REQUEST_SCHEMA = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
        "inputs": {"type": "array", "items": _TENSOR_IN, "minItems": 1, "maxItems": 1},
        "outputs": {"type": "array", "items": _OUTPUT_IN, "minItems": 1, "maxItems": 2},
    },
}


def infer_openapi(versioned: bool) -> dict[str, Any]:
    """The requestBody and parameters of an infer route: the body is parsed by the route, not FastAPI."""
    pixels = [value // 255 for row in example_digit() for value in row]  # 0..1: the model's own scale
    example = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": pixels}]}
    header = {
        "name": HEADER_LENGTH,
        "in": "header",
        "required": False,
        "description": "Binary tensor data extension: the length of the JSON part; input bytes follow it.",
        "schema": {"type": "integer", "minimum": 1},
    }
    parameters = [MODEL_NAME_PARAMETER, *([VERSION_PARAMETER] if versioned else []), header]
    content = {
        "application/json": {"schema": INFER_REQUEST_SCHEMA, "example": example},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "example": "<JSON request><input bytes>",
        },
    }
    return {"parameters": parameters, "requestBody": {"required": True, "content": content}}
