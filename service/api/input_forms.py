"""Decide a prediction request's input form and turn its body into 28x28 arrays.

JSON (a compact-layout fast parse first, the general parser for everything
else), a raw PNG/JPEG body, or multipart parts. The body arrives already capped
by ``LimitsMiddleware``. JSON is parsed here, not by FastAPI, so every failure
maps to our own codes. Pictures go to the decoder the route hands in
(``service.inputs.decoder``: a small thread pool, under time budgets).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NoReturn, TypeVar

import numpy as np
import orjson
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from service.api.limits import media_type
from service.errors import (
    IMAGE_ERRORS,
    InvalidInput,
    InvalidJSON,
    InvalidMultipart,
    PayloadTooLarge,
    ServiceError,
    TooManyImages,
    UnsupportedMediaType,
)
from service.inputs import json_input
from service.inputs.decoder import Abandoned
from service.inputs.file_structure import png_size

log = logging.getLogger("service.api")

IMAGE_TYPES = frozenset({"image/png", "image/jpeg"})
# A batch's PNGs together: at most this many pictures of MNIST_MAX_IMAGE_PIXELS (64 M pixels by default, about a
# second of the decode threads on two cores).
BATCH_PIXEL_SHARE = 16
# The form parser drops a part the body ends in the middle of: a body cut short reads as one without parts.
NONE_WHOLE = "; none arrived whole (a multipart body ends with its closing boundary, --BOUNDARY--)"
# What the form parser reads before our checks refuse any part not named for the route: a few fields, small.
MAX_FORM_FIELDS = 8
MAX_FIELD_BYTES = 16 * 1024

T = TypeVar("T")
Slot = np.ndarray | ServiceError  # one image of a batch: decoded, or the reason it was refused
Decode = Callable[[bytes, Abandoned], Awaitable[np.ndarray]]  # picture bytes -> 28x28 (service.inputs.decoder)


def parse_json(body: bytes) -> Any:
    """orjson refuses what JSON does not allow (NaN/Infinity literals, numbers past a double, invalid
    UTF-8) and nesting past 1,024 levels, each with its place and reason."""
    if not body:
        raise InvalidJSON("empty body; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise json_input.malformed(exc) from exc


def _validated(parse: Callable[..., T], *args: Any) -> T:
    try:
        return parse(*args)
    except ServiceError:
        raise
    except Exception as exc:  # a validator bug must still answer 4xx, not 500
        log.warning("json validator failed unexpectedly", exc_info=True)
        raise InvalidInput("body is not valid for this endpoint; see /docs for the expected shape") from exc


async def client_left(request: Request) -> NoReturn:
    """Raise ClientDisconnect when the client hangs up. Called once the body is read: uvicorn then answers
    ``receive()`` only when the connection is lost or the response sent."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    raise ClientDisconnect()


async def _settled(data: bytes, decode: Decode, abandoned: Abandoned) -> Slot:
    try:
        return await decode(data, abandoned)
    except IMAGE_ERRORS as exc:  # the picture's own fault; the model not ready or a full queue refuse the batch
        # Kept until the answer is written, without what it was raised through: the decoder's frames and so the
        # picture's full-size pixels (a batch of 198 blank 2000x2000 PNGs held over a gigabyte until it was answered).
        exc.__traceback__ = exc.__context__ = exc.__cause__ = None
        return exc


async def _form_files(request: Request, field: str, max_files: int) -> list[bytes]:
    """The file parts named ``field``; every multipart failure is invalid_multipart."""
    try:
        async with request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES) as form:
            other = next((name for name in form if name != field), None)
            if other is not None:  # what the schema says: only `field` parts (a mistyped name is caught here)
                raise InvalidMultipart(f"unexpected form part {other[:40]!r}; send only parts named {field!r}")
            parts = form.getlist(field)
            if any(not isinstance(p, UploadFile) for p in parts):
                raise InvalidMultipart(f"form field {field!r} must be a file part")
            return [await p.read() for p in parts if isinstance(p, UploadFile)]
    except (ServiceError, ClientDisconnect):  # a client that hung up mid-body is no malformed body: 499
        raise
    except Exception as exc:  # starlette's MultiPartException/HTTPException, python-multipart's own errors
        text = str(getattr(exc, "detail", None) or getattr(exc, "message", None) or exc)
        if "Too many files" in text:
            raise TooManyImages(f"too many file parts; at most {max_files}") from exc
        raise InvalidMultipart(f"malformed multipart body: {text[:120]}") from exc


async def single_image(request: Request, decode: Decode) -> np.ndarray:
    kind = media_type(request.headers.get("content-type"))
    if kind == "application/json":
        body = await request.body()
        image = _validated(json_input.parse_compact_request, body)
        if image is not None:
            return image
        json_input.check_list_count(body, 1)
        return _validated(json_input.parse_json_request, parse_json(body))
    if kind in IMAGE_TYPES:
        return await decode(await request.body(), partial(client_left, request))
    if kind == "multipart/form-data":
        files = await _form_files(request, "file", max_files=1)  # a second file part: 422 too_many_images
        if len(files) != 1:
            raise InvalidMultipart(f"expected exactly one file part named 'file'{NONE_WHOLE}")
        return await decode(files[0], partial(client_left, request))
    raise UnsupportedMediaType("send application/json, multipart/form-data, image/png or image/jpeg")


def check_batch_pixels(files: list[bytes], max_image_pixels: int) -> None:
    """Refuse a batch whose PNGs hold more pixels, by their headers, than BATCH_PIXEL_SHARE pictures of the largest
    size. A PNG decodes at full size (a JPEG at a fraction of it): 198 blank 2000x2000 PNGs fit in 4 MB and took two
    decode threads ten seconds, every other client's pictures waiting behind them, then a 503 no retry could help."""
    most = BATCH_PIXEL_SHARE * max_image_pixels
    pixels = sum(width * height for width, height in filter(None, map(png_size, files)))
    if pixels > most:
        raise PayloadTooLarge(
            f"the PNG images hold {pixels:,} pixels together; one request may hold {most:,}: "
            "send fewer or smaller pictures"
        )


async def batch_images(request: Request, decode: Decode, limit: int, max_image_pixels: int) -> list[Slot]:
    """Each image decoded or refused on its own; a malformed request as a whole raises."""
    kind = media_type(request.headers.get("content-type"))
    if kind == "application/json":
        # Shape errors fail the whole request; a blank image comes back as its own NoDigit entry.
        body = await request.body()
        json_input.check_list_count(body, limit)
        return _validated(json_input.parse_json_batch, parse_json(body), limit)
    if kind == "multipart/form-data":
        files = await _form_files(request, "files", max_files=limit)
        if not files:
            raise InvalidMultipart(f"expected one or more file parts named 'files'{NONE_WHOLE}")
        check_batch_pixels(files, max_image_pixels)
        left = partial(client_left, request)
        return list(await asyncio.gather(*(_settled(data, decode, left) for data in files)))
    raise UnsupportedMediaType("/predict/batch accepts application/json or multipart/form-data")
