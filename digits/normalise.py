"""Turn a grey picture of a digit into an MNIST-style input, the way MNIST itself was made.

MNIST digits are bright ink on a black background, cropped to the ink, scaled
so the longer side is 20 px with anti-aliasing, and placed in 28x28 with the
centre of mass at the centre. Pictures from people are not like that: paper
is grey and uneven, photos are noisy and JPEG-blocky, and the digit is big and
off-centre. So before MNIST's steps we remove the background, stretch the ink
to full strength and drop speckle. numpy + Pillow only.

Shared by the service (every uploaded picture, after ``service.inputs.imaging`` decoded it) and
training (outliers drawn the way the service presents them). The canvas and digit box are facts of
the model version (``metadata.json`` ``preprocessing``), so they are arguments, never defaults here.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

# MNIST's own construction: digits scaled so the longer side is 20 px (what training writes as
# ``preprocessing.digit_box``; the canvas is ``registry.layout.IMAGE_SIDE``).
MNIST_DIGIT_BOX = 20
# Cleaning runs on a copy whose longer side is at most this: enough to keep a
# digit that fills a tenth of a phone photo, cheap enough for ~10 ms a call.
WORK_SIDE = 768
# Connected components are labelled on a max-pooled mask of about this side.
_CC_SIDE = 128
# Below this ink-versus-paper difference (grey levels) the picture is blank.
MIN_CONTRAST = 24.0
# Grey level counted as ink when measuring area and bounding boxes.
INK_LEVEL = 64.0
# A 28x28 input needs at least this many ink pixels; real MNIST digits have 20+.
MIN_INK_PIXELS_28 = 10
# Share of a working image's pixels below which the ink is a speck, not a digit.
MIN_INK_FRACTION = 0.0005
# A stroke group lighter than this share of the heaviest one is speckle.
MIN_COMPONENT_SHARE = 0.03
# Paper may be this much brighter than the brightest of the border (grey levels).
BORDER_MARGIN = 12.0


class BlankImage(Exception):
    """The picture holds no digit: no ink stands out, or too little of it. The service answers it as ``no_digit``."""


def check_not_blank(arr: np.ndarray) -> None:
    """Raise BlankImage when a (28x28, 0..255, bright-ink) array holds (almost) no ink."""
    ink = int(np.count_nonzero(arr >= INK_LEVEL))
    if ink < MIN_INK_PIXELS_28:
        raise BlankImage(f"no digit found: only {ink} ink pixels (need at least {MIN_INK_PIXELS_28} at >= 64 of 255)")


def to_mnist(grey: np.ndarray, *, canvas: int, digit_box: int) -> np.ndarray:
    """uint8 grey [H, W] with bright ink -> float32 [canvas, canvas] in 0..255, the digit fitted to ``digit_box``.

    Raises BlankImage when no ink stands out from the background.
    """
    if grey.ndim != 2 or grey.size == 0:
        raise BlankImage("no digit found: empty image")
    if not 0 < digit_box <= canvas:
        raise ValueError("digit_box must be in 1..canvas")
    work = _working_copy(grey)
    ink = suppress_background(work)
    ink = _drop_speckle(ink)
    area = int(np.count_nonzero(ink >= INK_LEVEL))
    if area < max(MIN_INK_PIXELS_28 // 2, MIN_INK_FRACTION * ink.size):
        raise BlankImage(f"no digit found: the ink covers only {area} of {ink.size} pixels")
    patch = _scale_to_box(_crop_to_ink(ink), digit_box)
    out = _place_by_centre_of_mass(patch, canvas)
    check_not_blank(out)
    return out


def _working_copy(grey: np.ndarray) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8))
    longest = max(img.size)
    if longest > WORK_SIDE:
        # Integer box reduction averages the noise down and keeps the ink mass.
        img = img.reduce(math.ceil(longest / WORK_SIDE))
    radius = max(img.size) // 256
    if radius:
        # Sensor and JPEG noise is pixel-sized; strokes at this size are many pixels wide.
        img = img.filter(ImageFilter.BoxBlur(radius))
    return np.asarray(img, dtype=np.float32)


def background_surface(x: np.ndarray) -> np.ndarray:
    """A smooth estimate of the paper under the ink: a low percentile per block, median-filtered, interpolated.

    A low percentile ignores ink covering up to ~70 % of a block; the 3x3 median
    over blocks drops the few blocks that are mostly ink; interpolation follows
    gradients and vignetting that a single level would leave behind.
    """
    h, w = x.shape
    by, bx = max(1, min(8, h // 12)), max(1, min(8, w // 12))
    # The paper varies slowly: every few pixels is as good a sample as all of them, and far cheaper.
    step = max(1, max(h, w) // 160)
    sample = x[::step, ::step]
    bh, bw = sample.shape[0] // by, sample.shape[1] // bx
    # The few rows/columns past the last whole block only lose their vote, not their value.
    blocks = sample[: by * bh, : bx * bw].reshape(by, bh, bx, bw).transpose(0, 2, 1, 3).reshape(by, bx, bh * bw)
    grid = np.percentile(blocks, 30, axis=-1)
    if by > 2 or bx > 2:
        padded = np.pad(grid, 1, mode="edge")
        grid = np.median([padded[a : a + by, b : b + bx] for a in range(3) for b in range(3)], axis=0)
    # Bilinear upscaling of the block grid interpolates between block centres and holds the edges.
    surface = np.asarray(
        Image.fromarray(grid.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32
    )
    # Large filled shapes (a garment, a blot) would otherwise be taken for paper and
    # hollowed out into digit-like outlines. Paper is never brighter than what the
    # border shows (a linear gradient has its extremes on the border).
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    return np.minimum(surface, float(np.percentile(border, 95)) + BORDER_MARGIN)


def suppress_background(x: np.ndarray) -> np.ndarray:
    """float [H, W] bright ink on any background -> 0 background, ink stretched to ~255.

    Raises BlankImage when the brightest ink barely stands out from the paper.
    """
    d = x - background_surface(x)
    # The paper's level and noise come from the border: when a shape fills most
    # of the picture, the median pixel is the shape, not the paper.
    sample = np.concatenate([d[0], d[-1], d[:, 0], d[:, -1]])
    level = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample - level)))
    peak = float(d.max())
    contrast = peak - level
    if contrast < MIN_CONTRAST:
        raise BlankImage(f"no digit found: the image is blank (ink stands out by {contrast:.0f} of 255 grey levels)")
    floor = level + max(3.0 * sigma, 0.1 * contrast)
    if floor >= peak:
        raise BlankImage("no digit found: nothing stands out from the noise")
    strong = d[d > (floor + peak) / 2]
    ink_level = max(float(np.median(strong)), floor + 1.0)
    return np.clip((d - floor) * (255.0 / (ink_level - floor)), 0.0, 255.0)


def _component_labels(mask: np.ndarray) -> np.ndarray:
    """8-connected labels (flat index of a member pixel; -1 for background) by propagation + pointer jumping."""
    h, w = mask.shape
    n = h * w
    labels = np.where(mask, np.arange(n).reshape(h, w), n)
    for _ in range(4 * (h + w)):
        padded = np.pad(labels, 1, constant_values=n)
        nb = labels.copy()
        for a in range(3):
            for b in range(3):
                np.minimum(nb, padded[a : a + h, b : b + w], out=nb)
        nb = np.where(mask, nb, n)
        flat = nb.ravel()
        fg = flat < n
        for _ in range(4):  # a label points at a member whose own label is no larger
            flat[fg] = flat[flat[fg]]
        if np.array_equal(nb, labels):
            break
        labels = nb
    return np.where(mask, labels, -1)


def _drop_speckle(ink: np.ndarray) -> np.ndarray:
    """Zero ink groups much lighter than the heaviest one (JPEG noise, dust, paper grain)."""
    mask = ink >= INK_LEVEL
    if not mask.any():
        return ink
    h, w = ink.shape
    f = max(1, math.ceil(max(h, w) / _CC_SIDE))
    ph, pw = math.ceil(h / f) * f, math.ceil(w / f) * f
    cells = np.zeros((ph, pw), dtype=np.float32)
    cells[:h, :w] = np.where(mask, ink, 0.0)
    mass = cells.reshape(ph // f, f, pw // f, f).sum(axis=(1, 3))
    labels = _component_labels(mass > 0)
    fg = labels >= 0
    ids, inverse = np.unique(labels[fg], return_inverse=True)
    totals = np.bincount(inverse, weights=mass[fg])
    if len(ids) <= 1:
        return ink
    keep_ids = ids[totals >= MIN_COMPONENT_SHARE * totals.max()]
    keep = np.isin(labels, keep_ids)
    # Grow by one cell so the faint anti-aliased rim of kept strokes survives.
    padded = np.pad(keep, 1)
    grown = np.zeros_like(keep)
    for a in range(3):
        for b in range(3):
            grown |= padded[a : a + keep.shape[0], b : b + keep.shape[1]]
    full = np.repeat(np.repeat(grown, f, axis=0), f, axis=1)[:h, :w]
    return np.where(full, ink, 0.0).astype(np.float32)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero((ink >= INK_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink >= INK_LEVEL).any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _scale_to_box(patch: np.ndarray, box: int) -> np.ndarray:
    h, w = patch.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = np.asarray(Image.fromarray(patch.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    resized = np.clip(resized, 0.0, None)
    peak = float(resized.max())
    # MNIST ink always reaches full strength; thin pen strokes lose it when scaled down.
    if peak > 0:
        resized = resized * (255.0 / peak)
    return np.clip(resized, 0.0, 255.0).astype(np.float32)


def _place_by_centre_of_mass(patch: np.ndarray, canvas: int) -> np.ndarray:
    """Put the patch so its centre of mass lands on pixel canvas/2 (14,14 as measured on MNIST).

    The offset is clamped so the whole digit stays on the canvas; MNIST never cut digits.
    """
    h, w = patch.shape
    total = float(patch.sum())
    if total > 0:
        cy = float((patch.sum(axis=1) * np.arange(h)).sum()) / total
        cx = float((patch.sum(axis=0) * np.arange(w)).sum()) / total
    else:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    top = min(max(round(canvas / 2 - cy), 0), canvas - h)
    left = min(max(round(canvas / 2 - cx), 0), canvas - w)
    out = np.zeros((canvas, canvas), dtype=np.float32)
    out[top : top + h, left : left + w] = patch
    return out
