"""digits.softening: every input is blurred like training's augmented digits before the model, in one batch step."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digits.softening import INPUT_SOFTENING, soften
from tests.helpers import synthetic_digit


def one_at_a_time(image: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV's Gaussian blur of one picture (its own kernel size, zero beyond the edge), ring emptied, peak 255."""
    out = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    out[[0, -1], :] = 0
    out[:, [0, -1]] = 0
    return out * np.float32(255 / out.max())


@pytest.mark.parametrize("sigma", [0.5, INPUT_SOFTENING, 1.3])
def test_a_batch_is_softened_as_each_picture_alone_would_be(sigma: float) -> None:
    rng = np.random.default_rng(0)
    batch = np.stack([synthetic_digit(d).astype(np.float32) for d in range(10)] + [rng.uniform(0, 255, (28, 28))])
    before = batch.copy()
    soft = soften(batch, sigma)
    np.testing.assert_allclose(soft, np.stack([one_at_a_time(i, sigma) for i in batch]), atol=1e-3)
    np.testing.assert_array_equal(batch, before)  # the caller's images stay as they were
    assert soft.dtype == np.float32
    np.testing.assert_allclose(soft.max(axis=(1, 2)), 255.0, atol=1e-3)  # MNIST's full-strength ink


def test_softening_spreads_a_hard_edge_over_a_pixel_and_keeps_the_ring_empty() -> None:
    bar = np.zeros((1, 28, 28), np.float32)
    bar[0, 4:24, 12:16] = 255  # a hard-edged stroke, as a brush or a scan of a thick pen leaves
    soft = soften(bar, INPUT_SOFTENING)[0]
    assert 0 < soft[14, 11] < 128 and 0 < soft[14, 16] < 128  # a faint rim where there was none
    assert soft[14, 13] == pytest.approx(255, abs=1) and soft[14, 8] == 0  # the body stays ink, the paper paper
    edge = np.zeros((1, 28, 28), np.float32)
    edge[0, :, 0:3] = 255  # ink against the canvas's edge: its rim does not spill onto the ring
    assert soften(edge, INPUT_SOFTENING)[0][:, 0].max() == 0


def test_no_softening_and_blank_pictures_come_back_as_they_were() -> None:
    digit = synthetic_digit(3).astype(np.float32)[np.newaxis]
    np.testing.assert_array_equal(soften(digit, 0.0), digit)
    assert soften(np.zeros((2, 28, 28), np.float32), INPUT_SOFTENING).max() == 0  # no division by a zero peak
    assert soften(np.zeros((0, 28, 28), np.float32), INPUT_SOFTENING).shape == (0, 28, 28)
