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

# How many model inputs one image becomes: the input and two squeezed copies.
VIEWS = 3


def reduce_bit_depth(images: np.ndarray, bits: int) -> np.ndarray:
    levels = 2**bits - 1
    return np.round(images * levels) / levels


def median_filter(images: np.ndarray, size: int) -> np.ndarray:
    """Median over a size x size window on [N, H, W, 1] images (edge-padded)."""
    _, h, w, _ = images.shape
    pad_before = (size - 1) // 2
    pad_after = size - 1 - pad_before
    padded = np.pad(images, ((0, 0), (pad_before, pad_after), (pad_before, pad_after), (0, 0)), mode="edge")
    windows = [padded[:, i : i + h, j : j + w, :] for i in range(size) for j in range(size)]
    if size == 2 and np.issubdtype(images.dtype, np.floating):  # ints would overflow in lo + hi
        return _median_of_four(*windows).astype(images.dtype, copy=False)
    return np.median(np.stack(windows, axis=0), axis=0).astype(images.dtype, copy=False)


def _median_of_four(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """np.median of four arrays, elementwise, without sorting a stacked copy (~12x faster at serving sizes).

    With lo/hi of each pair, the middle two of the four are max(lo1, lo2) and min(hi1, hi2);
    np.median averages them as (x + y) / 2 in the input dtype, and so does this, bit for bit.
    """
    lo = np.maximum(np.minimum(a, b), np.minimum(c, d))
    hi = np.minimum(np.maximum(a, b), np.maximum(c, d))
    return (lo + hi) / lo.dtype.type(2)


def mahalanobis_scores(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared distance from each feature row to its nearest class mean."""
    diffs = features[:, None, :] - means[None, :, :]  # [N, C, K]
    # One BLAS matmul, then a row-wise dot: the same sum as einsum("nck,kl,ncl->nc"), ~20x faster.
    dists = ((diffs @ precision) * diffs).sum(axis=-1)
    return dists.min(axis=1)


def reconstruction_errors(images: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Squared distance of each flattened image to the PCA subspace of training digits."""
    centred = images.reshape(len(images), -1) - mean
    projected = (centred @ components.T) @ components
    return ((centred - projected) ** 2).sum(axis=1)


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
        if self.means.ndim != 2 or self.precision.shape != (self.means.shape[1], self.means.shape[1]):
            raise ValueError("guards.json: class_means [C,K] and precision [K,K] do not match")

    def expand(self, images: np.ndarray) -> np.ndarray:
        """[N,28,28,1] -> [3N,28,28,1]: inputs, 1-bit copies, median copies."""
        return np.concatenate(
            [images, reduce_bit_depth(images, self.bits), median_filter(images, self.median_size)], axis=0
        )

    def judge(self, images: np.ndarray, probs: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, list[Verdict]]:
        """Given the N inputs and the model's [3N, ...] outputs on ``expand(images)``,
        return the inputs' probabilities and one verdict per input."""
        n = len(images)
        p, p_bits, p_median = probs[:n], probs[n : 2 * n], probs[2 * n :]
        ood = mahalanobis_scores(features[:n], self.means, self.precision)
        recon = reconstruction_errors(images, self.pca_mean, self.pca_components)
        squeeze = squeeze_scores(p, p_bits, p_median)
        confidence = p.max(axis=1)
        verdicts = []
        for i in range(n):
            refusal = None
            if ood[i] > self.ood_threshold or recon[i] > self.pca_threshold or confidence[i] < self.min_confidence:
                refusal = NOT_A_DIGIT
            elif squeeze[i] > self.squeeze_threshold:
                refusal = SUSPECTED_ADVERSARIAL
            verdicts.append(Verdict(refusal, float(ood[i]), float(recon[i]), float(squeeze[i])))
        return p, verdicts
