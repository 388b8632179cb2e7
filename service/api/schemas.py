"""Response and request shapes, for the OpenAPI document and the admin bodies.

Prediction routes build their answers by hand (faster than validating every
response); these models only describe them in /docs.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from registry.files import MAX_VERSION
from registry.layout import IMAGE_SIDE as SIDE
from service.api.errors import describe


def example_digit() -> list[list[int]]:
    """A 28x28 '1': a vertical stroke of ink in the middle, MNIST convention (0 background, 255 ink)."""
    return [[255 if 13 <= col <= 14 and 4 <= row <= 23 else 0 for col in range(SIDE)] for row in range(SIDE)]


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_a_digit"])
    message: str = Field(examples=["the image does not look like a handwritten digit"])


class ErrorOut(BaseModel):
    error: ErrorDetail


class PredictionOut(BaseModel):
    digit: int = Field(ge=0, le=9, examples=[7])
    confidence: float = Field(ge=0, le=1, examples=[0.993])
    probabilities: list[float] | None = Field(
        None, min_length=10, max_length=10, description="Omitted when MNIST_RETURN_PROBABILITIES=false."
    )
    model_version: int = Field(examples=[3])
    input: list[list[int]] | None = Field(
        None,
        min_length=SIDE,
        max_length=SIDE,
        description="Only with `?include=input`: the normalised 28x28 image the model was given, integers 0..255 "
        "(0 = background, 255 = ink), rows top to bottom.",
    )


class BatchOut(BaseModel):
    predictions: list[PredictionOut | ErrorOut] = Field(
        description="One entry per image, in order: a prediction, or an error envelope for a refused image."
    )
    model_version: int = Field(examples=[3])


# What service/inputs/json_input.py accepts: 28 rows of 28 numbers, each 0..255.
Pixel = Annotated[float, Field(ge=0, le=255)]
Row = Annotated[list[Pixel], Field(min_length=SIDE, max_length=SIDE)]
Image = Annotated[list[Row], Field(min_length=SIDE, max_length=SIDE)]
# service/api/openapi.py writes the running server's MNIST_MAX_BATCH_IMAGES as maxItems where this marker is.
MAX_BATCH_IMAGES = {"x-max-items-from": "max_batch_images"}


class JsonImageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: Image = Field(description="28 rows of 28 numbers 0..255; 0 = background, 255 = ink.")


class JsonBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[Image] = Field(
        min_length=1,
        json_schema_extra=MAX_BATCH_IMAGES,
        description="1 to MNIST_MAX_BATCH_IMAGES images of 28x28 numbers.",
    )


def _a_json_number(value: object) -> object:
    # What the schema's "integer" admits: 3, and 3.0 (JSON Schema counts it as an integer); not true or "3", which
    # pydantic would otherwise take as 1 and 3.
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer, not a string or a boolean")
    return value


VersionId = Annotated[int, Field(ge=1, le=MAX_VERSION), BeforeValidator(_a_json_number)]


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: VersionId | None = Field(None, description="Load this version; default: the production alias.")


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: VersionId = Field(examples=[3])
    alias: str = Field("production", examples=["production"])


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str = Field("production", examples=["production"])


ERROR_CODES = "x-error-codes"  # service/api/openapi.py turns each list into the response's description and examples


def error_responses(*errors: type[Exception]) -> dict[int | str, dict[str, Any]]:
    """The error answers of an operation, by status, from the domain errors it can raise: the one error table
    (``service/api/errors.py``) decides each status and code."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        status, code, _, _ = describe(error("x"))
        response = responses.setdefault(status, {"model": ErrorOut, ERROR_CODES: []})
        response[ERROR_CODES].append(code)
    return responses


# Picture bodies carry no example: a schema cannot hold bytes, and a placeholder string pasted into curl is refused.
PICTURE = {"schema": {"type": "string", "format": "binary"}}


def predict_request_body(batch: bool) -> dict[str, Any]:
    """The requestBody of /predict(/batch): we parse the body ourselves, so FastAPI cannot infer it."""
    digit = example_digit()
    if batch:
        json_schema = JsonBatchIn.model_json_schema()
        json_example = {"images": [digit, digit]}
        multipart = {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "minItems": 1,
                        **MAX_BATCH_IMAGES,
                    }
                },
                "required": ["files"],
                # Any other part is refused (input_forms.py): a mistyped name says so rather than being ignored.
                "additionalProperties": False,
            },
            "encoding": {"files": {"contentType": "image/png, image/jpeg"}},
        }
        content: dict[str, Any] = {"application/json": {"schema": json_schema, "example": json_example}}
        content["multipart/form-data"] = multipart
    else:
        content = {
            "application/json": {"schema": JsonImageIn.model_json_schema(), "example": {"image": digit}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                    "additionalProperties": False,
                },
                "encoding": {"file": {"contentType": "image/png, image/jpeg"}},
            },
            "image/png": PICTURE,
            "image/jpeg": PICTURE,
        }
    return {"requestBody": {"required": True, "content": content}}
