"""Validate JSON digits: exactly 28 rows of 28 numbers, 0..255, MNIST polarity (0 background, 255 ink).

One convention only: 0..255. There is no 0..1 float form, because an image of
0/1 values is ambiguous (a faint 0..255 image or a full-strength 0..1 one);
such an image is refused with a message that says to multiply by 255.

Input is what ``json.loads`` returns (lists, ints, floats, ...). A valid image
takes a fast path (one type scan + one ``np.array``, ~35 µs); only invalid input
walks the slow path that finds the first bad place for the message. Messages
name the place and the kind of value, never echo the input itself.

28 is ``registry.layout.IMAGE_SIDE``, the input side of every version: the metadata schema
refuses a version whose input or ``preprocessing.canvas`` differs, so JSON needs no model fact.
"""

from __future__ import annotations

import math
from itertools import chain

import numpy as np
import orjson

from registry.layout import IMAGE_SIDE
from service.errors import InvalidInput, InvalidJSON, NoDigit, ServiceError, TooManyImages
from service.inputs.normalise import check_not_blank

NUMBER_TYPES = frozenset({int, float})  # exact types: bool is an int subclass
# The most arrays one image's JSON holds: itself, its rows and, nested down to single pixels as the Open Inference
# Protocol's [28, 28, 1] layout sends it, each pixel's. Slack for the arrays around the images (shape, outputs).
LISTS_PER_IMAGE = 1 + IMAGE_SIDE + IMAGE_SIDE * IMAGE_SIDE
LISTS_SLACK = 64
MAX_DEPTH = 1024  # orjson's nesting limit
TOO_DEEP = b"[" * (MAX_DEPTH + 1)
_INT_ONLY = frozenset({int})


def kind(value: object) -> str:
    """JSON's name for a value's kind, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _describe_number(value: int | float) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    # Huge ints would make a huge message (or hit Python's int-to-str limit).
    if abs(value) > 1e6:
        return "a number far out of range"
    # 15 significant digits: 255.0000001 is said as sent, not rounded to "255" (":g" keeps 6).
    return f"{value:.15g}" if isinstance(value, float) else str(value)


def _shape_error(obj: object, where: str) -> InvalidInput:
    """The first problem of an image that failed the fast path, as an InvalidInput naming the place."""
    expected = f"{IMAGE_SIDE} rows of {IMAGE_SIDE} numbers in 0..255"
    if not isinstance(obj, list):
        return InvalidInput(f"{where} must be a list of {expected}, got {kind(obj)}")
    if len(obj) != IMAGE_SIDE:
        # The two likeliest slips get their own words: a flattened array, and one list around the image too many.
        first = obj[0] if obj else None
        if isinstance(first, int | float):
            got = f"a flat list of {len(obj)} numbers; send the {IMAGE_SIDE} rows as lists"
        elif len(obj) == 1 and isinstance(first, list) and len(first) == IMAGE_SIDE and isinstance(first[0], list):
            got = f"1 list holding {IMAGE_SIDE} rows: the image is nested one list too deep"
        else:
            got = f"{len(obj)} rows"
        return InvalidInput(f"{where} must have {IMAGE_SIDE} rows of {IMAGE_SIDE} numbers, got {got}")
    for i, row in enumerate(obj):
        if not isinstance(row, list):
            return InvalidInput(f"{where}[{i}] must be a list of {IMAGE_SIDE} numbers, got {kind(row)}")
        if len(row) != IMAGE_SIDE:
            return InvalidInput(f"{where}[{i}] must have {IMAGE_SIDE} numbers, got {len(row)}")
        for j, value in enumerate(row):
            place = f"{where}[{i}][{j}]"
            if isinstance(value, bool) or not isinstance(value, int | float):
                nested = " (nested too deeply)" if isinstance(value, list) else ""
                return InvalidInput(f"{place} must be a number in 0..255, got {kind(value)}{nested}")
            if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= 255:
                return InvalidInput(f"{place} must be a number in 0..255, got {_describe_number(value)}")
    return InvalidInput(f"{where} must be {expected}")


def _fast_array(obj: object) -> np.ndarray | None:
    """The image as float32 when it is plainly valid, else None (the slow path explains why)."""
    if type(obj) is not list or len(obj) != IMAGE_SIDE:
        return None
    if not all(type(row) is list and len(row) == IMAGE_SIDE for row in obj):
        return None
    # Exact types: bool is an int subclass and must not pass as 0/1.
    types = set(map(type, chain.from_iterable(obj)))
    if not types <= NUMBER_TYPES:
        return None
    try:
        if types == _INT_ONLY:
            # The common case (people send integers): int64 converts ~25% faster than float64 and
            # cannot hold NaN or Infinity, so only the range needs checking.
            ints = np.array(obj, dtype=np.int64)
            if ints.min() < 0 or ints.max() > 255:
                return None
            return ints.astype(np.float32)
        arr = np.array(obj, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        return None
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
        return None
    return arr.astype(np.float32)


def parse_json_image(obj: object, where: str = "image") -> np.ndarray:
    """A JSON value -> float32 [28, 28] in 0..255 (0 background, 255 ink).

    Raises InvalidInput naming the first bad place (``image[3][17] must be a
    number in 0..255, got a string``), and NoDigit for a blank image.
    """
    arr = _fast_array(obj)
    if arr is None:
        raise _shape_error(obj, where)
    return _checked(arr, where)


def _checked(arr: np.ndarray, where: str, peak: float | None = None) -> np.ndarray:
    """The checks after the shape and range: not 0..1, not blank. ``peak``: arr.max(), when known."""
    peak = float(arr.max()) if peak is None else peak
    if 0 < peak <= 1.0:
        # On the 0..255 scale this shows no ink at all (no_digit, like a blank image); almost surely a 0..1 image.
        raise NoDigit(
            f"{where} values are all <= 1: this API takes 0..255 (0 background, 255 ink), not 0..1; multiply by 255"
        )
    try:
        check_not_blank(arr)
    except NoDigit as exc:
        raise NoDigit(f"{where}: {exc.message}") from None
    return arr


_JSON_SPACE = b" \t\n\r"
_COMPACT_HEAD = b'{"image":[['
_COMPACT_TAIL = b"]]}"
_DIGITS = b"0123456789"
# What a valid rows part leaves once its digits are deleted: 27 commas a row, "],[" between rows.
_ROW_SEPARATORS = b"],[".join([b"," * (IMAGE_SIDE - 1)] * IMAGE_SIDE)


def malformed(exc: orjson.JSONDecodeError, trailing_hint: str = "") -> InvalidJSON:
    """orjson's refusal in our words: its place, or that the bytes are no UTF-8 text (orjson says "str is not valid
    UTF-8: surrogates not allowed" of a Latin-1 or UTF-16 body). ``trailing_hint`` follows a refusal that bytes
    after the JSON may explain: no UTF-8, or content after the document."""
    if "UTF-8" in exc.msg:
        return InvalidJSON(f"the body is not UTF-8 text, as JSON must be{trailing_hint}")
    hint = trailing_hint if "after document" in exc.msg else ""
    return InvalidJSON(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}")


def check_list_count(body: bytes, max_images: int) -> None:
    """Refuse, before parsing, a body with more JSON arrays than ``max_images`` images can hold: the parser makes an
    object of each, and 1.4 million empty ones in 4 MB held the event loop for half a second. A count of bytes,
    about a millisecond for 4 MB."""
    most = max_images * LISTS_PER_IMAGE + LISTS_SLACK
    if body.count(b"[") <= most:
        return
    if TOO_DEEP in body:  # what the parser refuses at once, and as malformed: said as it would say it
        raise InvalidJSON(f"malformed JSON: nested past {MAX_DEPTH:,} levels")
    raise InvalidInput(
        f"the body holds more JSON arrays than {max_images} image{'s' if max_images > 1 else ''} can ({most}); "
        "send each image as 28 rows of 28 numbers"
    )


def parse_compact_request(body: bytes) -> np.ndarray | None:
    """``POST /predict``'s JSON body straight from bytes when it is plainly valid, else None.

    Accepts only ``{"image":[[n,...],...]}`` with 28 rows of 28 integers 0..255 written as JSON
    writes them (no leading zeros), optionally with the spaces ``json.dumps`` puts after ``,`` and
    ``:`` and whitespace around the whole. For those bodies the answer is exactly what
    ``parse_json_request(json.loads(body))`` gives, at a quarter of the cost; anything else (other
    whitespace, floats, extra fields, errors) returns None and takes that general path, which
    words the error messages.
    """
    text = body.strip(_JSON_SPACE)
    if b" " in text:
        # Outside a string a space after "," or ":" means nothing; the only string allowed here is "image".
        text = text.replace(b", ", b",").replace(b": ", b":")
    if not (text.startswith(_COMPACT_HEAD) and text.endswith(_COMPACT_TAIL)):
        return None
    rows_text = text[len(_COMPACT_HEAD) : -len(_COMPACT_TAIL)]
    # Only digits, and between them exactly the commas and brackets of 28 rows of 28 numbers, each "],[" whole:
    # a digit inside one ("5],1[10") leaves the same skeleton but is no JSON.
    if rows_text.translate(None, _DIGITS) != _ROW_SEPARATORS or rows_text.count(b"],[") != IMAGE_SIDE - 1:
        return None
    flat = rows_text.translate(None, b"[]")  # "5],[6" -> "5,6": the 784 numbers and the 783 commas between
    try:
        # With the commas counted, an empty number is what makes numpy read fewer than 784 (it says so with a
        # DeprecationWarning, a ValueError in numpy to come): cheaper than searching the text for one.
        ints = np.fromstring(flat, dtype=np.int64, sep=",")
    except (ValueError, DeprecationWarning):
        return None
    peak = int(ints.max()) if ints.size == IMAGE_SIDE * IMAGE_SIDE else -1
    if not 0 <= peak <= 255:
        return None
    # Every number is a digit string; JSON forbids leading zeros, so each one must be its value's shortest form.
    digits = len(flat) - (IMAGE_SIDE * IMAGE_SIDE - 1)
    if digits != ints.size + int(np.count_nonzero(ints >= 10)) + int(np.count_nonzero(ints >= 100)):
        return None
    return _checked(ints.reshape(IMAGE_SIDE, IMAGE_SIDE).astype(np.float32), "image", peak)


def parse_json_request(obj: object) -> np.ndarray:
    """The body of ``POST /predict`` as JSON: ``{"image": [[...]]}``, nothing else."""
    if not isinstance(obj, dict):
        raise InvalidInput(f'body must be a JSON object {{"image": [[...28x28...]]}}, got {kind(obj)}')
    _refuse_extra_fields(obj, "image")
    if "image" not in obj:
        raise InvalidInput('body must have the field "image": 28 rows of 28 numbers in 0..255')
    return parse_json_image(obj["image"], "image")


def parse_json_batch(obj: object, max_images: int) -> list[np.ndarray | ServiceError]:
    """The body of ``POST /predict/batch``: ``{"images": [image, ...]}`` -> one entry per image, in order.

    The envelope and malformed values fail the whole request: InvalidInput
    (naming ``images[i][r][c]``) or TooManyImages. A blank image does not: its
    entry is the NoDigit error itself, so one empty canvas costs one answer,
    not the batch. Callers answer each NoDigit entry as that image's error.
    """
    if not isinstance(obj, dict):
        raise InvalidInput(f'body must be a JSON object {{"images": [...]}}, got {kind(obj)}')
    _refuse_extra_fields(obj, "images")
    images = obj.get("images")
    if not isinstance(images, list):
        raise InvalidInput(f'"images" must be a list of 28x28 images, got {kind(images)}')
    if not images:
        raise InvalidInput('"images" must hold at least one image')
    if len(images) > max_images:
        raise TooManyImages(f"{len(images)} images in one request; the limit is {max_images}")
    results: list[np.ndarray | ServiceError] = []
    for i, image in enumerate(images):
        try:
            results.append(parse_json_image(image, f"images[{i}]"))
        except NoDigit as exc:
            results.append(exc)
    return results


def _refuse_extra_fields(obj: dict[object, object], allowed: str) -> None:
    extra = [key for key in obj if key != allowed]
    if extra:
        # Escaped as repr escapes (a bidirectional control shows as \u202e), so a message cannot be made to misread.
        name = repr(str(extra[0])[:40])[1:-1].replace('"', '\\"')
        raise InvalidInput(f'unexpected field "{name}": the body holds only "{allowed}"')
