"""The byte-level fast path for POST /predict JSON must agree with the general parser, or step aside."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.input_forms import parse_json
from service.errors import ServiceError
from service.inputs.json_input import parse_compact_request, parse_json_request

# 784 bytes are 784 pixel values 0..255: drawn as bytes, the 300 examples take 3 s instead of 23 s as integers.
pixels = st.binary(min_size=784, max_size=784).map(list)


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except ServiceError as exc:
        return type(exc).__name__, exc.message


def _general(body: bytes):
    return _outcome(lambda b: parse_json_request(parse_json(b)), body)


def _same(fast, general) -> bool:
    if fast[0] != general[0]:
        return False
    if fast[0] == "ok":
        return fast[1].dtype == general[1].dtype and np.array_equal(fast[1], general[1])
    return fast[1] == general[1]


@settings(max_examples=300, deadline=None)
@given(
    values=pixels,
    compact=st.booleans(),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(list(b' ,[]-.0123456789e"x:{}'))), max_size=3),
    drops=st.lists(st.integers(0, 10_000), max_size=2),
)
def test_fast_path_agrees_with_the_general_parser_or_declines(
    values: list[int], compact: bool, edits: list[tuple[int, int]], drops: list[int]
) -> None:
    image = np.asarray(values).reshape(28, 28).tolist()
    body = bytearray(json.dumps({"image": image}, separators=(",", ":") if compact else None).encode())
    for position, byte in edits:
        body[position % len(body)] = byte
    for position in drops:
        if len(body) > 1:
            del body[position % len(body)]
    fast = _outcome(parse_compact_request, bytes(body))
    if fast[0] == "ok" and fast[1] is None:
        return  # declined: the general parser answers
    assert _same(fast, _general(bytes(body)))


def test_plain_bodies_take_the_fast_path() -> None:
    image = np.random.default_rng(0).integers(0, 256, (28, 28)).tolist()
    for body in (json.dumps({"image": image}), json.dumps({"image": image}, separators=(",", ":"))):
        fast = parse_compact_request(body.encode())
        assert fast is not None and np.array_equal(fast, np.asarray(image, dtype=np.float32))


def _rows_text(image: list[list[int]]) -> str:
    return "],[".join(",".join(map(str, row)) for row in image)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda t: t.replace("],[", "],[,", 1), id="empty number opening a row"),
        pytest.param(lambda t: t.replace("],[", ",],[", 1), id="empty number closing a row"),
        pytest.param(lambda t: t.replace(",", ",,", 1), id="empty number inside a row"),
        pytest.param(lambda t: "," + t, id="empty first number"),
        pytest.param(lambda t: t + ",", id="empty last number"),
        pytest.param(lambda t: t.replace("],[", ",", 1), id="27 rows, one of 56"),
        pytest.param(lambda t: t.replace(",", "],[", 1), id="29 rows, one of 1"),
        pytest.param(lambda t: t.replace("],[", ",", 1).replace(",", "],[", 1), id="same separators count, moved"),
        pytest.param(lambda t: t.replace("7", "07", 1), id="leading zero"),
        pytest.param(lambda t: t.replace("1", "256", 1), id="over 255"),
        pytest.param(lambda t: t.replace("7", "99999999999999999999", 1), id="past int64"),
        pytest.param(lambda t: t.replace("],[", "] ,[", 1), id="space before a comma"),
        pytest.param(lambda t: t.replace("],[", "]],[[", 1), id="extra nesting"),
        pytest.param(lambda t: t.replace("],[", "],1[", 1), id="a digit inside a row separator"),
        pytest.param(lambda t: re.sub(r"\d+\],\[", "5]1,[", t, count=1), id="a digit after a row's bracket"),
    ],
)
@pytest.mark.parametrize("warnings_as", ["default", "error"])
def test_malformed_rows_are_left_to_the_general_parser(edit, warnings_as: str) -> None:
    image = np.random.default_rng(1).integers(0, 256, (28, 28)).tolist()
    body = ('{"image":[[' + edit(_rows_text(image)) + "]]}").encode()
    with warnings.catch_warnings():
        warnings.simplefilter(warnings_as)  # numpy warns about an empty number; under -W error it raises
        assert parse_compact_request(body) is None, "a malformed body took the fast path"
