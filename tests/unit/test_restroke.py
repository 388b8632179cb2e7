"""Training digits redrawn with one round brush (``--restroke``): shaped as the service shapes a drawing, one stroke
width end to end, the labels kept."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digits.normalise import MNIST_DIGIT_BOX, shaped_like_mnist
from registry.layout import IMAGE_SIDE
from tests.helpers import real_digits
from training import restroke as module
from training.config import parse_config
from training.restroke import restroke, restroked


def tapered_bar() -> np.ndarray:
    """A '1' written with a pen that swells: 7 px wide at the top, 1 px at the bottom."""
    digit = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    for row in range(4, 24):
        half = 3 - (row - 4) * 3 // 19
        digit[row, 14 - half : 15 + half] = 255
    return digit


def test_a_redrawn_digit_is_shaped_like_the_inputs_the_service_makes() -> None:
    x, _ = real_digits(10)
    rng = np.random.default_rng(0)
    for digit in x:
        out = restroke(digit, rng)
        assert out.dtype == np.uint8 and out.shape == (IMAGE_SIDE, IMAGE_SIDE)
        assert shaped_like_mnist(out, canvas=IMAGE_SIDE, digit_box=MNIST_DIGIT_BOX)


def test_the_brush_has_one_width_where_the_pen_swelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "BRUSH_RADIUS", (0.06, 0.06))
    out = restroke(tapered_bar(), np.random.default_rng(0))
    rows = np.flatnonzero((out >= 128).any(axis=1))
    ink = out[rows[3] : rows[-3]].sum(axis=1, dtype=np.float64)  # per row; the brush's round ends left out
    assert ink.max() <= 1.3 * ink.min(), ink
    pen = tapered_bar()[4:24].sum(axis=1, dtype=np.float64)
    assert pen.max() == 7 * pen.min()


def test_the_brush_width_follows_its_radius(monkeypatch: pytest.MonkeyPatch) -> None:
    digit = real_digits(1)[0][0]
    fine, thick = module.BRUSH_RADIUS
    ink = {}
    for radius in (fine, thick):
        monkeypatch.setattr(module, "BRUSH_RADIUS", (radius, radius))
        ink[radius] = int((restroke(digit, np.random.default_rng(0)) >= 128).sum())
    assert ink[thick] > 1.5 * ink[fine]


def test_a_share_of_the_digits_is_redrawn_with_its_own_labels_the_same_for_a_seed() -> None:
    x, _ = real_digits(20)
    ids = np.arange(20)  # each digit its own label: a redrawn digit's label names the digit it came from
    redrawn, labels = restroked(x, ids, 0.5, seed=3)
    assert redrawn.shape == (10, IMAGE_SIDE, IMAGE_SIDE) and redrawn.dtype == np.uint8
    assert len(set(labels.tolist())) == 10
    for image, label in zip(redrawn, labels, strict=True):
        likeness = [float(np.corrcoef(cv2.blur(image, (5, 5)).ravel(), cv2.blur(d, (5, 5)).ravel())[0, 1]) for d in x]
        assert int(np.argmax(likeness)) == label
    again, labels_again = restroked(x, ids, 0.5, seed=3)
    np.testing.assert_array_equal(redrawn, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert restroked(x, ids, 0.0, seed=3)[0].shape == (0, IMAGE_SIDE, IMAGE_SIDE)


def test_a_blank_digit_is_kept_as_it_is() -> None:
    blank = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    assert restroke(blank, np.random.default_rng(0)) is blank


def test_the_flag_is_a_share_half_by_default() -> None:
    assert parse_config([]).restroke == 0.5 and parse_config(["--restroke", "0"]).restroke == 0.0
    assert parse_config(["--restroke", "0.5"]).restroke == 0.5
    assert parse_config(["--restroke", "0.5"]).to_dict()["restroke"] == 0.5
    with pytest.raises(SystemExit):
        parse_config(["--restroke", "1.5"])
