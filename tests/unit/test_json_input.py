"""parse_json_image / parse_json_request / parse_json_batch: one convention (0..255), precise messages, fast."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from service.errors import InvalidInput, NoDigit, TooManyImages
from service.inputs.json_input import parse_json_batch, parse_json_image, parse_json_request


def digit() -> list[list[int]]:
    return [[255 if 6 <= r < 22 and 12 <= c < 16 else 0 for c in range(28)] for r in range(28)]


def with_value(value: object, r: int = 3, c: int = 17) -> list[list[object]]:
    rows: list[list[object]] = [list(row) for row in digit()]
    rows[r][c] = value
    return rows


def test_valid_ints_and_floats() -> None:
    arr = parse_json_image(digit())
    assert arr.shape == (28, 28) and arr.dtype == np.float32 and arr.max() == 255.0
    floats = parse_json_image([[v * 0.9 + 0.25 for v in row] for row in digit()])
    assert floats[10, 13] == pytest.approx(229.75)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("12", "got a string"),
        (None, "got null"),
        (True, "got a boolean"),
        (False, "got a boolean"),
        (float("nan"), "got NaN"),
        (float("inf"), "got Infinity"),
        (float("-inf"), "got -Infinity"),
        (-0.5, "got -0.5"),
        (255.5, "got 255.5"),
        (255.0000001, "got 255.0000001"),  # just over, and said so: not rounded to "255"
        (10**400, "far out of range"),
        ([1, 2], "got a list (nested too deeply)"),
        ({"a": 1}, "got an object"),
    ],
)
def test_bad_values_named_by_place(value: object, said: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_image(with_value(value))
    assert info.value.message.startswith("image[3][17] must be a number in 0..255")
    assert said in info.value.message


@pytest.mark.parametrize(
    ("obj", "said"),
    [
        (None, "image must be a list of 28 rows"),
        ({"image": []}, "got an object"),
        ([], "got 0 rows"),
        ([[0] * 28] * 27, "got 27 rows"),
        ([0] * 784, "got a flat list of 784 numbers"),
        ([[0] * 28] * 27 + [[0] * 29], "image[27] must have 28 numbers, got 29"),
        ([[0] * 28] * 27 + ["x" * 28], "image[27] must be a list of 28 numbers, got a string"),
    ],
)
def test_bad_shapes(obj: object, said: str) -> None:
    with pytest.raises(InvalidInput, match=None) as info:
        parse_json_image(obj)
    assert said in info.value.message


def test_message_never_echoes_input() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_image(with_value("A" * 10_000))
    assert len(info.value.message) < 200 and "AAAA" not in info.value.message


def test_zero_to_one_form_refused_with_a_hint() -> None:
    with pytest.raises(NoDigit, match="multiply by 255"):
        parse_json_image([[v / 255 for v in row] for row in digit()])


def test_blank_is_no_digit() -> None:
    with pytest.raises(NoDigit):
        parse_json_image([[0] * 28 for _ in range(28)])


def test_where_names_the_place() -> None:
    with pytest.raises(InvalidInput, match=r"^images\[4\]\[3\]\[17\]"):
        parse_json_image(with_value("x"), "images[4]")


def test_request_envelope() -> None:
    assert parse_json_request({"image": digit()}).shape == (28, 28)
    for body, said in [
        ([], "JSON object"),
        ({}, '"image"'),
        ({"image": digit(), "extra": 1}, 'unexpected field "extra"'),
    ]:
        with pytest.raises(InvalidInput) as info:
            parse_json_request(body)
        assert said in info.value.message


def test_batch_blank_is_per_image_and_malformed_fails_the_batch() -> None:
    blank = [[0] * 28 for _ in range(28)]
    out = parse_json_batch({"images": [digit(), blank, digit()]}, max_images=8)
    assert isinstance(out[0], np.ndarray) and isinstance(out[1], NoDigit) and isinstance(out[2], np.ndarray)
    assert out[1].message.startswith("images[1]")
    with pytest.raises(InvalidInput, match=r"^images\[1\]\[3\]\[17\]"):
        parse_json_batch({"images": [digit(), with_value(True)]}, max_images=8)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"images": [digit()] * 3}, TooManyImages),
        ({"images": []}, InvalidInput),
        ({"images": None}, InvalidInput),
        ({"image": [digit()]}, InvalidInput),
        ({"images": [digit()], "x": 1}, InvalidInput),
        ([digit()], InvalidInput),
    ],
)
def test_batch_envelope(body: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_json_batch(body, max_images=2)


def test_fast_enough() -> None:
    obj = json.loads(json.dumps([[(r * 28 + c) % 256 for c in range(28)] for r in range(28)]))
    parse_json_image(obj)
    n = 300
    start = time.perf_counter()
    for _ in range(n):
        parse_json_image(obj)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 1e-3, f"{per_call * 1e6:.0f} µs per image"
