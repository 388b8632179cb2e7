"""Every case of issue 4's Images and JSON sections gets its own domain error code, quickly.

The corpus is generated in code (``input_corpus.py``); no binary files are committed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from digits.normalise import MNIST_DIGIT_BOX
from registry.layout import IMAGE_SIDE
from service.errors import ServiceError
from service.inputs.json_input import parse_json_image
from service.inputs.normalise import image_to_mnist
from tests.unit.input_corpus import HOSTILE_IMAGES, HOSTILE_JSON, MAX_PIXELS, MAX_SIDE, Case

# Generous for a shared 2-core box: the slowest case takes ~50 ms alone.
BUDGET_S = 1.0


def outcome(call: object) -> tuple[str, np.ndarray | None]:
    try:
        arr = call()  # type: ignore[operator]
    except ServiceError as exc:
        assert exc.message and "Traceback" not in exc.message
        return exc.code, None
    return "ok", arr


def check(case: Case, run: object) -> None:
    payload = case.payload()
    start = time.perf_counter()
    code, arr = outcome(lambda: run(payload))  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    assert code == case.expect, f"{case.name}: got {code}"
    assert elapsed < BUDGET_S, f"{case.name}: {elapsed:.2f} s"
    if arr is not None:
        assert arr.shape == (28, 28) and arr.dtype == np.float32
        assert np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 255


@pytest.mark.parametrize("case", HOSTILE_IMAGES, ids=[c.name for c in HOSTILE_IMAGES])
def test_image_case(case: Case) -> None:
    check(
        case,
        lambda data: image_to_mnist(
            data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS, canvas=IMAGE_SIDE, digit_box=MNIST_DIGIT_BOX
        ),
    )


@pytest.mark.parametrize("case", HOSTILE_JSON, ids=[c.name for c in HOSTILE_JSON])
def test_json_case(case: Case) -> None:
    check(case, parse_json_image)


def test_corpus_covers_every_error_code_of_the_input_path() -> None:
    codes = {c.expect for c in HOSTILE_IMAGES + HOSTILE_JSON}
    assert codes >= {
        "unsupported_image_format",
        "invalid_image",
        "image_too_large",
        "multi_frame_image",
        "no_digit",
        "invalid_input",
        "ok",
    }
