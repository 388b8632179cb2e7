"""The softening every input gets before the model: shared by training (which records it in a version's
``preprocessing.softening``) and the service (which applies the version's to every batch)."""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Every input is softened by a Gaussian of this sigma (28x28 pixels) before the model (``soften``; a version
# records it as ``preprocessing.softening``). Training's augmentation resamples each digit three times (rotation,
# shift, zoom; bilinear), which blurs it about this much: the model learnt soft digits, and a raw dataset digit or
# a brush's hard-edged stroke sits further from them. Softened, canvases were refused 2.8 -> 1.2 % (four render
# seeds); JSON digits answered right +0.2 to +1.3 points on five splits, refused less, garments refused more
# (benchmarks/README.md).
INPUT_SOFTENING = 0.7


def soften(images: np.ndarray, sigma: float) -> np.ndarray:
    """float32 [N, H, W] in 0..255 -> a new array: each image blurred by a Gaussian of ``sigma`` px (zero beyond
    the edge), its outermost ring emptied and its peak brought back to 255, as MNIST's always is.
    ``sigma`` 0 leaves the images as they are.

    The blur's faint rim adds about a pixel to each side of a digit; the ring stays empty as in MNIST, where a digit
    placed against the canvas edge would otherwise spill its rim onto it.
    """
    images = np.asarray(images, dtype=np.float32)
    if sigma <= 0 or images.size == 0:
        return images.copy()
    _, h, w = images.shape
    # The separable blur as two matrix products over the whole batch: a third of the time of OpenCV's filter for a
    # batch, with the same kernel and border (benchmarks/README.md).
    out = np.matmul(np.matmul(_blur_matrix(h, sigma), images), _blur_matrix(w, sigma).T)
    out[:, 0, :] = out[:, -1, :] = 0.0
    out[:, :, 0] = out[:, :, -1] = 0.0
    peak = out.max(axis=(1, 2), keepdims=True)
    out *= 255.0 / np.maximum(peak, np.float32(1e-6))  # a blank image stays 0
    return np.minimum(out, 255.0, out=out)  # float rounding may leave a peak a hair over 255


def model_input(images: np.ndarray, softening: float, pixel_scale: float) -> np.ndarray:
    """[N, H, W] in 0..255 -> float32 [N, H, W]: a version's preprocessing of its inputs, softened by its
    ``softening`` then scaled by its ``pixel_scale``. The service applies it to every gathered batch; training scores
    and compares versions on digits made into inputs by it, so its figures are the served ones."""
    soft = soften(images, softening)
    soft *= np.float32(pixel_scale)
    return soft


@functools.cache
def _blur_matrix(side: int, sigma: float) -> np.ndarray:
    """OpenCV's Gaussian kernel for ``sigma`` (its own size for float images) along a line of ``side`` pixels, zero
    beyond its ends (BORDER_CONSTANT), as a [side, side] matrix: row i holds the weights pixel i takes."""
    taps = cv2.getGaussianKernel(round(sigma * 8 + 1) | 1, sigma).ravel()
    radius = len(taps) // 2
    offset = np.arange(side)[None, :] - np.arange(side)[:, None]
    return np.where(np.abs(offset) <= radius, taps[np.clip(offset + radius, 0, 2 * radius)], 0.0).astype(np.float32)
