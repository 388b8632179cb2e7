"""Property tests: whatever comes in, the input path answers an MNIST array or a domain error, nothing else."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from digits.normalise import MNIST_DIGIT_BOX
from registry.layout import IMAGE_SIDE
from service.errors import ServiceError
from service.inputs.json_input import parse_json_batch, parse_json_image
from service.inputs.normalise import image_to_mnist, to_mnist
from tests.unit.input_corpus import MAX_PIXELS, MAX_SIDE, draw_one_rgba, draw_seven, encode, seven_small

SEEDS: tuple[bytes, ...] = (
    encode(seven_small(), "PNG"),
    encode(seven_small("RGB"), "JPEG", quality=80),
    encode(seven_small("P"), "PNG"),
    encode(draw_one_rgba((64, 64)), "PNG"),
    encode(draw_seven((120, 90), origin=(20, 10), scale=0.15, width=40), "JPEG", quality=70, progressive=True),
    encode(seven_small("CMYK"), "JPEG"),
)


def assert_array_or_domain_error(call: object) -> None:
    try:
        arr = call()  # type: ignore[operator]
    except ServiceError:
        return
    assert arr.shape == (28, 28) and arr.dtype == np.float32
    assert np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 255.0


def run_bytes(data: bytes) -> None:
    assert_array_or_domain_error(
        lambda: image_to_mnist(
            data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS, canvas=IMAGE_SIDE, digit_box=MNIST_DIGIT_BOX
        )
    )


@given(st.binary(max_size=4096))
def test_any_bytes(data: bytes) -> None:
    run_bytes(data)


@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]), st.binary(max_size=2048))
def test_any_bytes_behind_valid_magic(magic: bytes, rest: bytes) -> None:
    run_bytes(magic + rest)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        # Mostly past the magic bytes, so the decoders (not the sniffer) see the damage.
        pos = draw(st.integers(min(3, len(data)), max(3, len(data) - 1)))
        if op == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos : pos + len(chunk)] = chunk
    return bytes(data)


@given(mutated())
def test_mutated_png_and_jpeg(data: bytes) -> None:
    run_bytes(data)


@given(arrays(np.uint8, st.tuples(st.integers(1, 80), st.integers(1, 80))))
def test_any_grey_array(grey: np.ndarray) -> None:
    assert_array_or_domain_error(lambda: to_mnist(grey, canvas=IMAGE_SIDE, digit_box=MNIST_DIGIT_BOX))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=60,
)


@given(json_values)
def test_any_json_value(obj: object) -> None:
    assert_array_or_domain_error(lambda: parse_json_image(obj))


valid_rows = st.one_of(
    arrays(np.uint8, (28, 28)).map(lambda a: a.astype(int).tolist()),
    arrays(np.float64, (28, 28), elements=st.floats(0, 255)).map(lambda a: a.tolist()),
)


@given(valid_rows, st.integers(0, 27), st.integers(0, 27), json_values)
def test_nearly_valid_json(rows: list[list[object]], r: int, c: int, value: object) -> None:
    rows[r][c] = value
    assert_array_or_domain_error(lambda: parse_json_image(rows))
    try:
        out = parse_json_batch({"images": [rows, rows]}, max_images=4)
    except ServiceError:
        return
    assert len(out) == 2
