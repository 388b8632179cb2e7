"""benchmarks/renders.py: the renders the accuracy and image benchmarks rely on are what they claim.

Same seed, same bytes (so two runs measure the same pictures); each kind's format, size and polarity as
issue 13 describes it; the skeleton the canvas brush traces is one pixel wide and keeps the digit's extent.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from benchmarks.renders import KINDS, render, thin


def a_seven() -> np.ndarray:
    digit = np.zeros((28, 28), np.uint8)
    digit[5:8, 7:21] = 255  # the bar
    for row in range(8, 24):  # the stem, slanting left
        col = 20 - (row - 8) // 2
        digit[row, col - 1 : col + 2] = 255
    return digit


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_gives_the_same_bytes(kind: str) -> None:
    first = render(kind, a_seven(), np.random.default_rng([3, 1]))
    again = render(kind, a_seven(), np.random.default_rng([3, 1]))
    other = render(kind, a_seven(), np.random.default_rng([3, 2]))
    assert first == again
    if kind != "png28":  # a 28x28 PNG is the digit itself, the same whenever the stream picks the same variant
        assert first.data != other.data
    assert first.variant.startswith(f"{kind}/")


def test_each_kind_has_the_format_and_size_people_send() -> None:
    rng = np.random.default_rng(0)
    for _ in range(4):
        with Image.open(io.BytesIO(render("canvas", a_seven(), rng).data)) as img:
            assert (img.format, img.size) == ("PNG", (280, 280))
        with Image.open(io.BytesIO(render("photo", a_seven(), rng).data)) as img:
            assert img.format == "JPEG" and max(img.size) >= 1600 and min(img.size) >= 1200
            assert img.width * img.height <= 4_000_000  # inside the service's default pixel limit
        with Image.open(io.BytesIO(render("png28", a_seven(), rng).data)) as img:
            assert (img.format, img.size) == ("PNG", (28, 28))


def test_a_light_canvas_has_thick_dark_strokes_on_white() -> None:
    rng = np.random.default_rng(0)
    made = next(r for r in (render("canvas", a_seven(), rng) for _ in range(20)) if r.variant == "canvas/light")
    grey = np.asarray(Image.open(io.BytesIO(made.data)).convert("L"))
    assert np.median(grey) > 240  # mostly white
    ink = grey < 128
    # A 15-25 px brush: some row crosses the stem over at least 12 ink pixels in a run.
    widest = max(np.diff(np.flatnonzero(np.diff(np.r_[0, row, 0]))).max(initial=0) for row in ink.astype(int))
    assert widest >= 12


def test_thinning_leaves_a_one_pixel_line_as_long_as_the_bar() -> None:
    bar = np.zeros((20, 40), bool)
    bar[8:13, 5:35] = True
    skeleton = thin(bar)
    assert skeleton.sum(axis=0)[10:30].max() == 1  # one pixel thick along the bar
    cols = np.flatnonzero(skeleton.any(axis=0))
    assert cols.min() <= 8 and cols.max() >= 31  # and still (nearly) end to end
