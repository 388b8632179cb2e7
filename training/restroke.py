"""Training digits redrawn as a drawing app draws them: the pen's path, one round brush, one width.

A canvas drawing's strokes have one width from end to end and round ends, whatever the digit; MNIST's pen
strokes swell and thin. A model that has only seen the pen reads some clean canvas digits wrong (a 6 as
an 8, a 3 as a 7). Each redrawn digit follows the centreline of a training digit (the ridge of its
distance transform, at 8x) with a brush a few per cent of the digit's height wide, and is then shaped
by ``digits.normalise`` exactly as the service shapes an uploaded picture.
"""

from __future__ import annotations

import cv2
import numpy as np

from digits import normalise
from registry.layout import IMAGE_SIDE

# Drawn at this multiple of 28 px, so the brush's edge is anti-aliased when the service's shaping reduces it.
SCALE = 8
# Brush radius as a share of the digit's height: from a fine pen to a thick finger stroke (canvas renders
# reduced to MNIST's box measure 1.5-2.7 px across; MNIST's own strokes 2-4).
BRUSH_RADIUS = (0.03, 0.09)
_INK = 100  # grey level of the original digit counted as its stroke
_SLOPE = 0.5  # depth (drawn pixels) the centreline may gain in one step along it


def restroke(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [28, 28] bright-ink digit -> uint8 [28, 28]: its centreline redrawn with a round brush, refitted."""
    big = cv2.resize(digit, (IMAGE_SIDE * SCALE, IMAGE_SIDE * SCALE), interpolation=cv2.INTER_LINEAR)
    mask = (big >= _INK).view(np.uint8)
    ridge = _centreline(cv2.distanceTransform(mask, cv2.DIST_L2, 5))
    rows = np.flatnonzero(mask.any(axis=1))
    height = float(rows[-1] - rows[0] + 1) if rows.size else float(big.shape[0])
    radius = rng.uniform(*BRUSH_RADIUS) * height
    away = cv2.distanceTransform((~ridge).view(np.uint8), cv2.DIST_L2, 5)
    ink = np.rint(255 * np.clip(radius + 0.5 - away, 0.0, 1.0)).astype(np.uint8)
    try:
        shaped = normalise.to_mnist(ink, canvas=IMAGE_SIDE, digit_box=normalise.MNIST_DIGIT_BOX)
    except normalise.BlankImage:  # a digit too faint to have a centreline: kept as it is
        return digit
    return np.rint(shaped).astype(np.uint8)


def _centreline(depth: np.ndarray) -> np.ndarray:
    """Where the distance to the paper peaks: no neighbour deeper by more than _SLOPE. Off the middle of a stroke
    a step towards it is a whole pixel deeper; along the middle of a stroke that swells or thins, a fraction of one
    (a strict peak would break the line wherever the pen's width changes)."""
    return (depth > 0) & (depth >= cv2.dilate(depth, np.ones((3, 3), np.uint8)) - _SLOPE)


def restroked(x: np.ndarray, y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``share`` of the digits ``x`` (uint8 [N, 28, 28]), drawn at random, redrawn; with their labels."""
    rng = np.random.default_rng([seed, 0x5E57])
    picked = rng.choice(len(x), size=round(share * len(x)), replace=False)
    return np.stack([restroke(x[i], rng) for i in picked]) if picked.size else x[:0], y[picked]
