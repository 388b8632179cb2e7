"""The guard maths: the fast forms must give what the plain definitions give."""

from __future__ import annotations

import numpy as np
import pytest

from service.guards import mahalanobis_scores, median_filter

pytestmark = pytest.mark.unit


def reference_median(images: np.ndarray, size: int) -> np.ndarray:
    """The definition: np.median over every edge-padded size x size window, one pixel at a time."""
    n, h, w, _ = images.shape
    before = (size - 1) // 2
    padded = np.pad(images, ((0, 0), (before, size - 1 - before), (before, size - 1 - before), (0, 0)), mode="edge")
    out = np.empty_like(images)
    for k in range(n):
        for i in range(h):
            for j in range(w):
                out[k, i, j, 0] = np.median(padded[k, i : i + size, j : j + size, 0])
    return out


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("levels", [None, 2, 5])  # continuous values, and the ties squeezed images have
def test_median_filter_matches_the_definition_bit_for_bit(size: int, levels: int | None) -> None:
    images = np.random.default_rng(size).random((3, 28, 28, 1), dtype=np.float32)
    if levels is not None:
        images = np.round(images * (levels - 1)) / np.float32(levels - 1)
    got = median_filter(images, size)
    assert got.dtype == images.dtype
    np.testing.assert_array_equal(got, reference_median(images, size))


def test_median_filter_keeps_integer_images_exact() -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype(np.uint8)
    np.testing.assert_array_equal(median_filter(images, 2), reference_median(images, 2))


def test_mahalanobis_scores_match_a_plain_loop() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(17, 64)).astype(np.float32)
    means = rng.normal(size=(10, 64)).astype(np.float32)
    root = rng.normal(size=(64, 64))
    precision = (root @ root.T / 64).astype(np.float32)  # symmetric positive definite, as calibrated

    expected = np.array(
        [
            min(
                float((f - m).astype(np.float64) @ precision.astype(np.float64) @ (f - m).astype(np.float64))
                for m in means
            )
            for f in features
        ]
    )
    np.testing.assert_allclose(mahalanobis_scores(features, means, precision), expected, rtol=1e-5)
