"""Refuse inputs that are not digits or look crafted to fool the model.

Pure numpy, shared by training (which calibrates the thresholds on held-out
digits and writes them to ``guards.json``) and the service (which applies
them). Two detectors:

* out-of-distribution: Mahalanobis distance of the penultimate features to
  the nearest class mean (Lee et al., 2018), the reconstruction error of the
  input under a PCA of training digits (catches noise and textures the
  features map close to a digit), and a floor on the top probability, since
  softmax confidence alone stays high on many non-digits;
* adversarial: feature squeezing (Xu et al., 2018) - the largest L1 distance
  between the prediction on the input and on a 1-bit and a 2x2-median copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

NOT_A_DIGIT = "not_a_digit"
SUSPECTED_ADVERSARIAL = "suspected_adversarial"

# What a refusal code (Guards.refusal_codes) stands for: 0 = answered.
REFUSALS: tuple[str | None, ...] = (None, NOT_A_DIGIT, SUSPECTED_ADVERSARIAL)
_CODE = {refusal: code for code, refusal in enumerate(REFUSALS)}

# How many model inputs one image becomes: the input and two squeezed copies.
VIEWS = 3


def reduce_bit_depth(images: np.ndarray, bits: int) -> np.ndarray:
    levels = 2**bits - 1
    return np.round(images * levels) / levels


def median_filter(images: np.ndarray, size: int) -> np.ndarray:
    """Median over a size x size window on [N, H, W, 1] images (edge-padded)."""
    if size == 2 and np.issubdtype(images.dtype, np.floating) and images.shape[-1] == 1:  # ints overflow lo + hi
        return _median_2x2(images)
    _, h, w, _ = images.shape
    pad_before = (size - 1) // 2
    pad_after = size - 1 - pad_before
    padded = np.pad(images, ((0, 0), (pad_before, pad_after), (pad_before, pad_after), (0, 0)), mode="edge")
    windows = [padded[:, i : i + h, j : j + w, :] for i in range(size) for j in range(size)]
    return np.median(np.stack(windows, axis=0), axis=0).astype(images.dtype, copy=False)


def _median_2x2(images: np.ndarray) -> np.ndarray:
    """np.median of each 2x2 window (edge-padded below and right), elementwise, without sorting a stacked
    copy: ~20x faster at serving sizes, and it runs once per batch on the event loop.

    Of four values a, b (one row) and c, d (the next), the middle two are max(min(a, b), min(c, d)) and
    min(max(a, b), max(c, d)); np.median averages them as (x + y) / 2 in the input dtype, and so does
    this, bit for bit. The work runs on the whole padded batch as one flat array, where the right
    neighbour is 1 element on and the one below a padded row on: contiguous passes instead of short
    strided rows, with the pairs of each row shared by the two windows that use them. What wraps
    across row and image ends lands in the padding column and row, which are dropped.
    """
    n, h, w, _ = images.shape
    row = w + 1
    grid = images.reshape(n, h, w)
    padded = np.empty((n, h + 1, row), dtype=images.dtype)
    padded[:, :h, :w] = grid
    padded[:, :h, w] = grid[:, :, w - 1]
    padded[:, h] = padded[:, h - 1]
    flat = padded.reshape(-1)
    pair_lo = np.minimum(flat[:-1], flat[1:])
    pair_hi = np.maximum(flat[:-1], flat[1:])
    lo = np.maximum(pair_lo[:-row], pair_lo[row:])
    lo += np.minimum(pair_hi[:-row], pair_hi[row:])
    lo /= images.dtype.type(2)
    out = np.empty(flat.size, dtype=images.dtype)
    out[: lo.size] = lo
    return out.reshape(n, h + 1, row)[:, :h, :w, np.newaxis]


class MahalanobisForm:
    """Squared distance from feature rows to the nearest class mean, for one (means, precision).

    Expanded as x'Px - 2 x'Pm + m'Pm with the symmetric part of P (a quadratic form depends on nothing
    else): two small matmuls per batch instead of one over every (row, class) difference, the parts
    that depend only on the version computed once; float64 so the expansion loses nothing to cancellation.
    """

    def __init__(self, means: np.ndarray, precision: np.ndarray) -> None:
        p = np.asarray(precision, dtype=np.float64)
        m = np.asarray(means, dtype=np.float64)
        self._p = (p + p.T) / 2
        self._pm = self._p @ m.T  # [K, C]
        self._mpm = (m * self._pm.T).sum(axis=1)[np.newaxis, :]  # [1, C]

    def scores(self, features: np.ndarray) -> np.ndarray:
        x = features.astype(np.float64)
        dists = ((x @ self._p) * x).sum(axis=1)[:, np.newaxis] - 2 * (x @ self._pm) + self._mpm
        return dists.min(axis=1)


def mahalanobis_scores(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared distance from each feature row to its nearest class mean (see MahalanobisForm)."""
    return MahalanobisForm(means, precision).scores(features)


def reconstruction_errors(images: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Squared distance of each flattened image to the PCA subspace of training digits.

    With orthonormal components C (a PCA's), |c - cC'C|^2 = |c|^2 - |cC'|^2: one matmul instead of two
    (Guards checks the components are orthonormal).
    """
    centred = images.reshape(len(images), -1) - mean
    coords = centred @ components.T
    errors = (centred * centred).sum(axis=1, dtype=np.float64) - (coords * coords).sum(axis=1, dtype=np.float64)
    return np.maximum(errors, 0.0)


def squeeze_scores(probs: np.ndarray, probs_bits: np.ndarray, probs_median: np.ndarray) -> np.ndarray:
    l1_bits = np.abs(probs - probs_bits).sum(axis=1)
    l1_median = np.abs(probs - probs_median).sum(axis=1)
    return np.maximum(l1_bits, l1_median)


@dataclass(frozen=True)
class Verdict:
    refusal: str | None  # None, NOT_A_DIGIT or SUSPECTED_ADVERSARIAL
    ood_score: float
    reconstruction_error: float
    squeeze_score: float


MAX_BIT_DEPTH = 8  # a uint8 picture's
MAX_MEDIAN_SIZE = 5


class Guards:
    """The detectors of one model version, built from its ``guards.json``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        ood = spec["ood"]
        adv = spec["adversarial"]
        self.means = np.asarray(ood["class_means"], dtype=np.float32)
        self.precision = np.asarray(ood["precision"], dtype=np.float32)
        self.ood_threshold = float(ood["threshold"])
        self.pca_mean = np.asarray(ood["pca_mean"], dtype=np.float32)
        self.pca_components = np.asarray(ood["pca_components"], dtype=np.float32)
        self.pca_threshold = float(ood["pca_threshold"])
        self.min_confidence = float(ood["min_confidence"])
        self.bits = int(adv["bit_depth"])
        self.median_size = int(adv["median_size"])
        self.squeeze_threshold = float(adv["threshold"])
        # The squeezes training writes are 1 bit and a 2x2 median; 2**bits of a 400-digit depth held the GIL and
        # the memory of a worker's load for ever, and a wide window stacks size**2 copies of each batch.
        if not (1 <= self.bits <= MAX_BIT_DEPTH and 1 <= self.median_size <= MAX_MEDIAN_SIZE):
            raise ValueError(
                f"guards.json: adversarial.bit_depth must be 1..{MAX_BIT_DEPTH} and median_size 1..{MAX_MEDIAN_SIZE}"
            )
        # A NaN threshold compares false with every score: the detector would answer everything, silently.
        figures = {
            "ood.threshold": self.ood_threshold,
            "ood.pca_threshold": self.pca_threshold,
            "ood.min_confidence": self.min_confidence,
            "adversarial.threshold": self.squeeze_threshold,
            "ood.class_means": self.means,
            "ood.precision": self.precision,
            "ood.pca_mean": self.pca_mean,
            "ood.pca_components": self.pca_components,
        }
        unusable = [name for name, value in figures.items() if not np.isfinite(value).all()]
        if unusable:
            raise ValueError(f"guards.json: {', '.join(unusable)} must hold finite numbers only")
        if self.means.ndim != 2 or self.precision.shape != (self.means.shape[1], self.means.shape[1]):
            raise ValueError("guards.json: class_means [C,K] and precision [K,K] do not match")
        self._mahalanobis = MahalanobisForm(self.means, self.precision)
        components = self.pca_components.astype(np.float64)
        if components.ndim != 2 or not np.allclose(components @ components.T, np.eye(len(components)), atol=1e-3):
            raise ValueError("guards.json: pca_components must be orthonormal rows (a PCA's)")

    def expand(self, images: np.ndarray) -> np.ndarray:
        """[N,28,28,1] -> [3N,28,28,1]: inputs, 1-bit copies, median copies."""
        n = len(images)
        rows = np.empty((VIEWS * n, *images.shape[1:]), dtype=images.dtype)
        rows[:n] = images
        rows[n : 2 * n] = reduce_bit_depth(images, self.bits)
        rows[2 * n :] = median_filter(images, self.median_size)
        return rows

    def refusal_codes(
        self, images: np.ndarray, probs: np.ndarray, features: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        """Given the N inputs and the model's [3N, ...] outputs on ``expand(images)``: the inputs'
        probabilities, a refusal code per input (an index into REFUSALS, 0 = answered) and the scores
        behind it (ood, reconstruction error, squeeze), all vectors over the batch."""
        n = len(images)
        p, p_bits, p_median = probs[:n], probs[n : 2 * n], probs[2 * n :]
        ood = self._mahalanobis.scores(features[:n])
        recon = reconstruction_errors(images, self.pca_mean, self.pca_components)
        squeeze = squeeze_scores(p, p_bits, p_median)
        not_digit = (ood > self.ood_threshold) | (recon > self.pca_threshold) | (p.max(axis=1) < self.min_confidence)
        codes = np.zeros(n, dtype=np.int8)
        codes[squeeze > self.squeeze_threshold] = _CODE[SUSPECTED_ADVERSARIAL]
        codes[not_digit] = _CODE[NOT_A_DIGIT]  # checked first: a non-digit is not called adversarial
        return p, codes, (ood, recon, squeeze)

    def judge(self, images: np.ndarray, probs: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, list[Verdict]]:
        """``refusal_codes`` as one Verdict per input, scores included (for evaluation and reports)."""
        p, codes, (ood, recon, squeeze) = self.refusal_codes(images, probs, features)
        verdicts = [
            Verdict(REFUSALS[code], float(o), float(r), float(q))
            for code, o, r, q in zip(codes.tolist(), ood.tolist(), recon.tolist(), squeeze.tolist(), strict=True)
        ]
        return p, verdicts
