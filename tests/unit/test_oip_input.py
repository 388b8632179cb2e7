"""An Open Inference Protocol request -> 28x28 digits: JSON and binary tensors, and each refusal's message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from service.errors import InvalidInput, InvalidJSON, NoDigit, TooManyImages
from service.inputs.oip_input import header_length, parse_infer_request, tensor_images
from tests.helpers import synthetic_digit

ROOT = Path(__file__).resolve().parents[2]
OUTPUTS = {"probabilities": "probabilities", "features": "features"}


def parse(doc: dict, binary: bytes = b"", max_images: int = 8):
    header = orjson.dumps(doc)
    body, length = (header + binary, len(header)) if binary else (header, None)
    return parse_infer_request(
        body,
        length,
        input_name="image",
        output_names=OUTPUTS,
        default_output="probabilities",
        pixel_scale=1 / 255,
        max_images=max_images,
    )


def tensor(array: np.ndarray, datatype: str, binary: bool = False) -> dict:
    entry: dict = {"name": "image", "datatype": datatype, "shape": list(array.shape)}
    if binary:
        entry["parameters"] = {"binary_data_size": array.nbytes}
    else:
        entry["data"] = array.reshape(-1).tolist()
    return entry


DIGIT = synthetic_digit(7)


def test_fp32_on_the_model_scale_and_uint8_give_the_same_digits() -> None:
    as_fp32 = (DIGIT[np.newaxis, ..., np.newaxis] / 255.0).astype(np.float32)
    as_uint8 = np.stack([DIGIT, DIGIT])
    from_json = parse({"inputs": [tensor(as_fp32, "FP32")]})
    from_binary = parse({"inputs": [tensor(as_uint8, "UINT8", binary=True)]}, as_uint8.tobytes())
    assert from_json.images.shape == (1, 28, 28) and from_binary.images.shape == (2, 28, 28)
    np.testing.assert_allclose(from_json.images[0], DIGIT, atol=1e-3)
    np.testing.assert_array_equal(from_binary.images[1], DIGIT)
    assert [(o.name, o.binary) for o in from_json.outputs] == [("probabilities", False)]


def test_outputs_follow_the_request_and_the_binary_default() -> None:
    doc = {
        "id": "r1",
        "inputs": [tensor(DIGIT[np.newaxis], "UINT8")],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "features"}, {"name": "probabilities", "parameters": {"binary_data": False}}],
    }
    request = parse(doc)
    assert request.id == "r1" and [(o.name, o.binary) for o in request.outputs] == [
        ("features", True),
        ("probabilities", False),
    ]


@pytest.mark.parametrize(
    ("change", "error", "says"),
    [
        (lambda d: d["inputs"][0].update(name="pixels"), InvalidInput, "unknown input 'pixels'"),
        (lambda d: d["inputs"][0].update(datatype="INT64"), InvalidInput, "FP32 (0..1) or UINT8"),
        (lambda d: d["inputs"][0].update(shape=[1, 28, 27]), InvalidInput, "input shape must be"),
        (lambda d: d["inputs"][0].update(shape=[9, 28, 28]), TooManyImages, "at most 8"),
        (lambda d: d["inputs"][0].update(data=d["inputs"][0]["data"][:-1]), InvalidInput, "783 values"),
        (lambda d: d["inputs"][0].update(data=["x"] * 784), InvalidInput, "numbers only"),
        (lambda d: d["inputs"][0].update(data=[300] * 784), InvalidInput, "0..255"),
        (lambda d: d.update(outputs=[{"name": "logits"}]), InvalidInput, "unknown output 'logits'"),
        (lambda d: d.update(outputs=[{"name": "features"}, {"name": "features"}]), InvalidInput, "once"),
        (lambda d: d.update(inputs=[]), InvalidInput, "list of one tensor"),
        (lambda d: d.update(id=3), InvalidInput, "'id' must be a string"),
        # Values of a JSON type the protocol does not use there: a 4xx that says so, never a 500.
        (lambda d: d["inputs"][0].update(datatype=["UINT8"]), InvalidInput, "FP32 (0..1) or UINT8"),
        (lambda d: d.update(outputs=[{"name": ["features"]}]), InvalidInput, "unknown output (a list, not a string)"),
        (lambda d: d.update(outputs=[{"name": {"a": 1}}]), InvalidInput, "unknown output (an object, not a string)"),
        (lambda d: d.update(outputs=[{"name": "probabilities"}] * 3), InvalidInput, "more outputs requested than"),
        (lambda d: d["inputs"][0].update(shape=[7] * 500_000), InvalidInput, "got 500000 dimensions"),
        (lambda d: d["inputs"][0].update(shape=[2, 28]), InvalidInput, "got [2, 28]"),
    ],
)
def test_each_mistake_says_what_is_wrong(change, error: type, says: str) -> None:
    doc = {"inputs": [tensor(DIGIT[np.newaxis], "UINT8")]}
    change(doc)
    with pytest.raises(error, match=re.escape(says)):
        parse(doc)


@pytest.mark.parametrize(
    ("where", "says"),
    [
        (lambda d: d["inputs"][0].update(name="DEEP"), "unknown input (a list, not a string)"),
        (lambda d: d["inputs"][0].update(datatype="DEEP"), "UINT8 (0..255), got (a list, not a string)"),
        (lambda d: d.update(outputs=[{"name": "DEEP"}]), "unknown output (a list, not a string)"),
    ],
    ids=["input-name", "datatype", "output-name"],
)
def test_a_deeply_nested_name_is_refused_by_its_kind(where, says: str) -> None:
    """971 levels of lists, which orjson takes (up to 1,024): str() of them raised RecursionError, a 500."""
    doc = {"inputs": [tensor(DIGIT[np.newaxis], "UINT8")]}
    where(doc)
    body = orjson.dumps(doc).replace(b'"DEEP"', b"[" * 971 + b"]" * 971)
    with pytest.raises(InvalidInput, match=re.escape(says)):
        parse_infer_request(body, None, input_name="image", output_names=OUTPUTS, default_output="probabilities",
                            pixel_scale=1 / 255, max_images=8)  # fmt: skip


def test_a_long_name_is_quoted_cut_short() -> None:
    doc = {"inputs": [{**tensor(DIGIT[np.newaxis], "UINT8"), "name": "x" * 10_000}]}
    with pytest.raises(InvalidInput, match=f"unknown input '{'x' * 40}'; the model's one input is 'image'"):
        parse(doc)


@pytest.mark.parametrize(
    "data",
    [["12"] * 784, [" 12 "] * 784, [True] * 784, [12] * 783 + [True], [[" 12 "] * 28] * 28, [[False] * 28] * 28],
    ids=["strings", "padded-strings", "booleans", "one-boolean", "nested-strings", "nested-booleans"],
)
def test_data_holds_numbers_only_not_strings_or_booleans(data: list) -> None:
    doc = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 28, 28], "data": data}]}
    with pytest.raises(InvalidInput, match="must hold numbers only"):
        parse(doc)


class Counted(list):
    """A JSON list that counts the items read from it."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        Counted.reads += 1
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            Counted.reads += 1
            yield item


def test_data_of_nested_empty_lists_is_counted_before_it_is_read() -> None:
    """600,000 items of [[[]]], what a 4 MiB body holds: numpy walked them all (1.2 s of CPU on the event loop,
    after orjson's parse) before the count refused them. Now one item a level is read."""
    Counted.reads = 0
    data = Counted([Counted([Counted([Counted()])]) for _ in range(1_000)])  # numpy read every one
    Counted.reads = 0
    with pytest.raises(InvalidInput, match="more than the 784 values the shape needs"):
        tensor_images("image", "UINT8", [1, 28, 28], raw=None, data=data, input_name="image", pixel_scale=1 / 255,
                      max_images=8)  # fmt: skip
    assert Counted.reads <= 3


def test_data_nested_to_the_shape_is_taken_and_ragged_data_is_refused() -> None:
    rows = DIGIT.tolist()
    for data, taken in (
        (rows, True),
        ([*rows[:-1], rows[-1][:-1]], False),
        ([*rows[:-1], [*rows[-1][:-1], [0]]], False),
    ):
        doc = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 28, 28], "data": data}]}
        if taken:
            np.testing.assert_array_equal(parse(doc).images[0], DIGIT)
        else:
            with pytest.raises(InvalidInput, match="must hold numbers only"):
                parse(doc)


def test_fp32_outside_the_model_scale_and_blank_images_are_refused_by_index() -> None:
    with pytest.raises(InvalidInput, match=re.escape("0..1")):
        parse({"inputs": [tensor(DIGIT[np.newaxis].astype(np.float32), "FP32")]})
    images = np.stack([DIGIT, np.zeros_like(DIGIT)])
    with pytest.raises(NoDigit, match="image 1"):
        parse({"inputs": [tensor(images, "UINT8")]})


def test_binary_sizes_and_the_header_length_must_agree() -> None:
    digits = DIGIT[np.newaxis]
    with pytest.raises(InvalidInput, match="binary_data_size is 784 but 783 bytes"):
        parse({"inputs": [tensor(digits, "UINT8", binary=True)]}, digits.tobytes()[:-1])
    with pytest.raises(InvalidInput, match="no 'binary_data_size'"):
        parse({"inputs": [tensor(digits, "UINT8")]}, b"\x00")
    for size in ("784", 784.0, True, -1):
        entry = {**tensor(digits, "UINT8"), "parameters": {"binary_data_size": size}}
        with pytest.raises(InvalidInput, match="'binary_data_size' must be a whole number of bytes"):
            parse({"inputs": [entry]}, digits.tobytes())
    assert header_length(None, 10) is None and header_length("4", 10) == 4
    # "\xb2" is a superscript two (a digit to str.isdigit); 5,000 digits are past what int() converts (4,300)
    for bad in ("0", "11", "-1", "x", "\xb2", "0010", "9" * 5_000):
        with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
            header_length(bad, 10)
    with pytest.raises(InvalidJSON):
        parse_infer_request(b"{", None, input_name="image", output_names=OUTPUTS, default_output="probabilities",
                            pixel_scale=1 / 255, max_images=8)  # fmt: skip


def test_the_api_docs_list_every_v2_route() -> None:
    from service.api.routes_oip import infer_router, router

    documented = (ROOT / "docs" / "api.md").read_text()
    paths = {route.path for each in (router, infer_router) for route in each.routes}  # type: ignore[attr-defined]
    assert paths and all(f" {path}`" in documented for path in paths), paths


def test_the_grpc_port_is_off_by_default_and_must_not_be_the_http_port() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings().grpc_port == 0
    with pytest.raises(ValidationError, match="MNIST_GRPC_PORT must differ from MNIST_PORT"):
        Settings(port=8000, grpc_port=8000)


def test_a_request_of_more_arrays_than_its_images_can_hold_is_refused_before_parsing() -> None:
    """1.4 million empty arrays in 4 MB cost the parser half a second of the event loop, each request."""
    arrays = "[" + ",".join(["[]"] * (8 * 813 + 64)) + "]"
    body = f'{{"inputs":[{{"name":"image","shape":[1],"datatype":"UINT8","data":{arrays}}}]}}'.encode()
    with pytest.raises(InvalidInput, match=r"more JSON arrays than 8 images can \(6568\)"):
        parse_infer_request(body, None, input_name="image", output_names=OUTPUTS, default_output="probabilities",
                            pixel_scale=1 / 255, max_images=8)  # fmt: skip


def test_binary_data_without_its_length_header_is_named_as_the_likely_slip() -> None:
    header = orjson.dumps({"inputs": [tensor(synthetic_digit(7).astype(np.uint8), "UINT8", binary=True)]})
    body = header + synthetic_digit(7).astype(np.uint8).tobytes()  # sent without Inference-Header-Content-Length
    with pytest.raises(InvalidJSON) as refused:
        parse_infer_request(body, None, input_name="image", output_names=OUTPUTS, default_output="probabilities",
                            pixel_scale=1 / 255, max_images=8)  # fmt: skip
    assert refused.value.message == (
        "the body is not UTF-8 text, as JSON must be; binary tensor data after the JSON needs the "
        "Inference-Header-Content-Length header"
    )


def test_values_sent_both_as_data_and_as_binary_are_refused() -> None:
    """The binary values were used and the JSON ones silently ignored."""
    digit = synthetic_digit(7).astype(np.uint8)
    both = {**tensor(digit, "UINT8", binary=True), "data": digit.ravel().tolist()}
    with pytest.raises(InvalidInput, match="both 'data' and binary data"):
        parse({"inputs": [both]}, binary=digit.tobytes())
