"""A JSON digit out of range or out of shape is refused where it is, by both paths that read JSON bodies.

The byte-level path (``parse_compact_request``) must take every plainly valid body and step aside for
anything else; the general path (``parse_json_request``) words the refusal. Answers are checked as the
client sees them: status, code and message of the error envelope.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.api.errors import describe
from service.errors import InvalidInput, NoDigit, ServiceError, TooManyImages
from service.inputs.json_input import parse_compact_request, parse_json_batch, parse_json_image, parse_json_request
from tests.helpers import as_json_rows, synthetic_digit

SEVEN = as_json_rows(synthetic_digit(7))


def with_value(value: object, r: int = 3, c: int = 17) -> list[list[object]]:
    rows: list[list[object]] = [list(row) for row in SEVEN]
    rows[r][c] = value
    return rows


def answer(body: bytes) -> tuple[int, str, str]:
    """What ``POST /predict`` answers a JSON body: the fast path first, the general path when it steps aside."""
    try:
        image = parse_compact_request(body)
        if image is None:
            image = parse_json_request(json.loads(body))
    except ServiceError as exc:
        return describe(exc)[:3]
    assert image.shape == (28, 28) and image.dtype == np.float32
    return 200, "ok", ""


@pytest.mark.parametrize("value", [256, 300, 65_535, -1])
@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "json.dumps"])
def test_an_integer_out_of_range_is_422_naming_the_place(value: int, spaced: bool) -> None:
    body = json.dumps({"image": with_value(value)}, separators=None if spaced else (",", ":")).encode()
    assert parse_compact_request(body) is None
    assert answer(body) == (422, "invalid_input", f"image[3][17] must be a number in 0..255, got {value}")


@pytest.mark.parametrize(("value", "said"), [(300.0, "300"), (255.5, "255.5"), (-0.25, "-0.25")])
def test_a_float_out_of_range_is_422_naming_the_place(value: float, said: str) -> None:
    body = json.dumps({"image": with_value(value)}).encode()
    assert answer(body) == (422, "invalid_input", f"image[3][17] must be a number in 0..255, got {said}")


def test_the_whole_range_is_accepted_by_the_fast_path() -> None:
    rows = with_value(0, 0, 0)
    rows[27][27] = 255
    image = parse_compact_request(json.dumps({"image": rows}).encode())
    assert image is not None and image[0, 0] == 0 and image[27, 27] == 255


def test_a_blank_canvas_is_no_digit_on_the_fast_path_too() -> None:
    """Said as blank: not told to multiply its zeros by 255."""
    with pytest.raises(NoDigit) as info:
        parse_compact_request(json.dumps({"image": [[0] * 28] * 28}).encode())
    assert info.value.message.startswith("image: no digit found")


def test_a_full_ink_cell_before_a_bad_one_is_not_named() -> None:
    rows = with_value("x", 5, 5)
    rows[0][0] = 255
    assert answer(json.dumps({"image": rows}).encode())[2] == "image[5][5] must be a number in 0..255, got a string"


@pytest.mark.parametrize(
    "body",
    [
        b'\x0c{"image":' + json.dumps(SEVEN).encode() + b"}",  # form feed: not JSON whitespace (RFC 8259)
        b'{"image":' + json.dumps(SEVEN, separators=(",", ":")).encode() + b"]",  # no closing brace
    ],
    ids=["form-feed", "unclosed"],
)
def test_a_body_json_would_refuse_is_not_taken_by_the_fast_path(body: bytes) -> None:
    assert parse_compact_request(body) is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([SEVEN], 'body must be a JSON object {"image": [[...28x28...]]}, got a list'),
        ({"image": 7}, "image must be a list of 28 rows of 28 numbers in 0..255, got a number"),
        (
            {"image": [v for row in SEVEN for v in row]},
            "image must have 28 rows of 28 numbers, got a flat list of 784 numbers; send the 28 rows as lists",
        ),
        (
            {"image": [SEVEN]},
            "image must have 28 rows of 28 numbers, got 1 list holding 28 rows: the image is nested one list too deep",
        ),
        ({"image": [SEVEN[0]]}, "image must have 28 rows of 28 numbers, got 1 rows"),
        ({"image": [[[1]]]}, "image must have 28 rows of 28 numbers, got 1 rows"),
        ({"image": [None]}, "image must have 28 rows of 28 numbers, got 1 rows"),
        ({"image": with_value([1])}, "image[3][17] must be a number in 0..255, got a list (nested too deeply)"),
        ({"image": with_value("7")}, "image[3][17] must be a number in 0..255, got a string"),
        ({"image": SEVEN, "x" * 60: 1}, f'unexpected field "{"x" * 40}": the body holds only "image"'),
        ({"image": SEVEN, "gpj.\u202eexe": 1}, 'unexpected field "gpj.\\u202eexe": the body holds only "image"'),
    ],
    ids=[
        "list-body",
        "number-image",
        "flat",
        "one-list-too-deep",
        "one-row",
        "one-short-nest",
        "null-row",
        "nested",
        "string",
        "long-field-name",
        "bidirectional-control-escaped",
    ],
)
def test_a_malformed_body_is_named_exactly(body: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_request(body)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x", 'body must be a JSON object {"images": [...]}, got a string'),
        ({"images": {}}, '"images" must be a list of 28x28 images, got an object'),
        ({"images": []}, '"images" must hold at least one image'),
        ({"images": [SEVEN] * 3}, "3 images in one request; the limit is 2"),
    ],
)
def test_a_malformed_batch_is_named_exactly(body: object, message: str) -> None:
    with pytest.raises((InvalidInput, TooManyImages)) as info:
        parse_json_batch(body, max_images=2)
    assert info.value.message == message


def test_a_batch_of_exactly_the_limit_is_accepted() -> None:
    assert len(parse_json_batch({"images": [SEVEN, SEVEN]}, max_images=2)) == 2


def test_a_huge_value_is_named_without_its_digits() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_image(with_value(10**7))
    assert info.value.message == "image[3][17] must be a number in 0..255, got a number far out of range"


@pytest.mark.parametrize(("value", "said"), [(10**6, "1000000"), (10**6 + 1, "a number far out of range")])
def test_values_up_to_a_million_are_shown_as_sent(value: int, said: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_image(with_value(value))
    assert info.value.message == f"image[3][17] must be a number in 0..255, got {said}"


def test_an_image_mixing_integers_and_floats_is_accepted() -> None:
    rows = with_value(127.5)
    assert parse_json_image(rows)[3, 17] == 127.5 and parse_json_image(rows).max() == 255


def test_a_faint_image_peaking_at_2_is_blank_not_the_0_to_1_form() -> None:
    faint = [[2 if value else 0 for value in row] for row in SEVEN]
    with pytest.raises(NoDigit) as info:
        parse_json_image(faint)
    assert info.value.message.startswith("image: no digit found")
    on_the_0_to_1_scale = [[1 if value else 0 for value in row] for row in SEVEN]
    with pytest.raises(NoDigit) as info:
        parse_json_image(on_the_0_to_1_scale)
    assert info.value.message.startswith("image values are all <= 1: this API takes 0..255")
