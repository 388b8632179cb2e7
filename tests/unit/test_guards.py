"""The guard maths: the fast forms must give what the plain definitions give."""

from __future__ import annotations

import numpy as np
import pytest

from digits.guards import (
    NOT_A_DIGIT,
    REFUSALS,
    SUSPECTED_ADVERSARIAL,
    Guards,
    mahalanobis_scores,
    median_filter,
    reconstruction_errors,
)


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


def test_mahalanobis_scores_use_only_the_symmetric_part_of_the_precision() -> None:
    """A quadratic form x'Px equals x'((P + P')/2)x, so a slightly asymmetric calibration changes nothing."""
    rng = np.random.default_rng(2)
    features, means = rng.normal(size=(5, 8)), rng.normal(size=(3, 8))
    root = rng.normal(size=(8, 8))
    symmetric = root @ root.T / 8
    skewed = symmetric + np.triu(rng.normal(size=(8, 8)) * 0.1, 1)  # an upper-triangle-only perturbation
    expected = np.array([min(float((f - m) @ skewed @ (f - m)) for m in means) for f in features])
    np.testing.assert_allclose(mahalanobis_scores(features, means, skewed), expected, rtol=1e-9)


def orthonormal_rows(k: int, d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, k)))
    return q.T.astype(np.float32)


def test_reconstruction_errors_match_the_projection_definition() -> None:
    rng = np.random.default_rng(3)
    images = rng.random((6, 28, 28, 1), dtype=np.float32)
    mean = rng.random(784, dtype=np.float32)
    components = orthonormal_rows(40, 784, seed=4)
    centred = images.reshape(6, -1).astype(np.float64) - mean
    residual = centred - (centred @ components.T.astype(np.float64)) @ components.astype(np.float64)
    expected = (residual**2).sum(axis=1)
    np.testing.assert_allclose(reconstruction_errors(images, mean, components), expected, rtol=1e-4)


def spec(components: np.ndarray, **thresholds: float) -> dict:
    k = 4
    return {
        "ood": {
            "class_means": np.zeros((10, k)).tolist(),
            "precision": np.eye(k).tolist(),
            "threshold": thresholds.get("ood", 1e9),
            "pca_mean": np.zeros(784).tolist(),
            "pca_components": components.tolist(),
            "pca_threshold": thresholds.get("pca", 1e9),
            "min_confidence": thresholds.get("confidence", 0.0),
        },
        "adversarial": {"bit_depth": 1, "median_size": 2, "threshold": thresholds.get("squeeze", 1e9)},
    }


def test_guards_refuse_pca_components_that_are_not_orthonormal() -> None:
    Guards(spec(orthonormal_rows(5, 784, seed=5)))  # a PCA's components load
    with pytest.raises(ValueError, match="orthonormal"):
        Guards(spec(orthonormal_rows(5, 784, seed=5) * 2.0))


@pytest.mark.parametrize(
    ("bits", "size", "loads"),
    [(1, 2, True), (8, 5, True), (1, 1, True), (0, 2, False), (9, 2, False), (10**400, 2, False), (1, 0, False),
     (1, 6, False)],
)  # fmt: skip
def test_squeezes_past_a_pictures_depth_or_a_wide_window_are_refused_at_load(bits: int, size: int, loads: bool) -> None:
    """A published guards.json with a 400-digit bit depth hung every worker's load and ate its memory."""
    document = spec(orthonormal_rows(5, 784, seed=5))
    document["adversarial"].update(bit_depth=bits, median_size=size)
    if loads:
        assert (Guards(document).bits, Guards(document).median_size) == (bits, size)
    else:
        with pytest.raises(ValueError, match=r"bit_depth must be 1\.\.8 and median_size 1\.\.5"):
            Guards(document)


def test_a_non_digit_is_not_also_called_adversarial() -> None:
    """Codes per image: 0 answered, NOT_A_DIGIT when any OOD signal fires (first), else SUSPECTED_ADVERSARIAL."""
    guards = Guards(spec(orthonormal_rows(5, 784, seed=6), confidence=0.6, squeeze=0.5))
    images = np.zeros((3, 28, 28, 1), dtype=np.float32)
    confident, unsure = [0.9] + [0.1 / 9] * 9, [0.5] + [0.5 / 9] * 9
    flipped = [0.1 / 9] * 9 + [0.9]
    # image 0: confident, squeezed copies agree; image 1: confident, squeezed copies flip; image 2: unsure and flips.
    inputs, bit_copies, median_copies = (
        [confident, confident, unsure],
        [confident, flipped, flipped],
        [confident, flipped, flipped],
    )
    probs = np.array([*inputs, *bit_copies, *median_copies], dtype=np.float32)
    features = np.zeros((9, 4), dtype=np.float32)
    _, codes, _ = guards.refusal_codes(images, probs, features)
    assert [REFUSALS[c] for c in codes.tolist()] == [None, SUSPECTED_ADVERSARIAL, NOT_A_DIGIT]
    _, verdicts = guards.judge(images, probs, features)
    assert [v.refusal for v in verdicts] == [None, SUSPECTED_ADVERSARIAL, NOT_A_DIGIT]


@pytest.mark.parametrize("shape", [(1, 28, 28, 1), (2, 5, 7, 1), (4, 9, 3, 1), (1, 1, 1, 1)])
def test_the_flat_2x2_median_holds_at_every_edge(shape: tuple[int, int, int, int]) -> None:
    """The 2x2 median runs on the padded batch as one flat array: no value may leak across rows or images."""
    images = np.random.default_rng(len(shape) + shape[1]).random(shape, dtype=np.float32)
    np.testing.assert_array_equal(median_filter(images, 2), reference_median(images, 2))
