"""Turn a grey picture of a digit into an MNIST-style input, the way MNIST itself was made.

MNIST digits are bright ink on a black background, cropped to the ink, scaled
so the longer side is 20 px with anti-aliasing, and placed in 28x28 with the
centre of mass at the centre. Pictures from people are not like that: paper
is grey and uneven, photos are noisy and JPEG-blocky, and the digit is big and
off-centre. So before MNIST's steps we remove the background, stretch the ink
to full strength and drop speckle. numpy + OpenCV (no Python loop over pixels or labels).

Shared by the service (every uploaded picture, after ``service.inputs.imaging`` decoded it) and
training (outliers drawn the way the service presents them). The canvas and digit box are facts of
the model version (``metadata.json`` ``preprocessing``), so they are arguments, never defaults here.
"""

from __future__ import annotations

import cv2
import numpy as np

# Callers decode on a small thread pool of their own; OpenCV's worker threads would only compete with it.
cv2.setNumThreads(1)

# MNIST's own construction: digits scaled so the longer side is 20 px (what training writes as
# ``preprocessing.digit_box``; the canvas is ``registry.layout.IMAGE_SIDE``).
MNIST_DIGIT_BOX = 20
# Cleaning runs on a copy whose longer side is at most this (reduced by a whole factor, so between
# half of it and all of it). Measured on 500 rendered canvases and photos each (benchmarks/README.md):
# as accurate as 512 and 768, at a quarter and a ninth of their pixels.
WORK_SIDE = 256
# Kept strokes grow by one pixel per this many pixels of the working side, to keep their faint rim.
_CC_SIDE = 128
# Below this ink-versus-paper difference (grey levels) the picture is blank.
MIN_CONTRAST = 24.0
# Grey level counted as ink when measuring area and bounding boxes.
INK_LEVEL = 64.0
# A 28x28 input needs at least this many ink pixels; real MNIST digits have 20+.
MIN_INK_PIXELS_28 = 10
# Share of a working image's pixels below which the ink is a speck, not a digit.
MIN_INK_FRACTION = 0.0005
# A stroke group smaller than this share of the largest one is speckle.
MIN_COMPONENT_SHARE = 0.03
# When the largest stroke group is this many times smaller than the frame (a digit photographed on a page),
# the other groups that touch the frame's edge are scene (a shadow's corner, a cut rule), not strokes; so is the
# largest, when it touches the edge and a group inside the frame is at least half as large.
SCENE_FACTOR = 3
# On such a page, a group this many pixels thick or thinner (on average along its length) is what is left of a
# rule of lined or squared paper, not a stroke, which is thicker at the working side.
RULE_THICKNESS = 1.5
# A group along this share of one side of the frame or more is scene (a photo's desk or page edge, a shadow's band),
# not a digit, whose strokes touch an edge only where they run off it: dropped when another group of at least
# EDGE_REST of the frame is left (four times the least ink a digit has: no speck of dust stands in for a digit).
EDGE_CONTACT = 0.5
EDGE_REST = 4 * MIN_INK_FRACTION
# Paper may be this much brighter than the brightest of the border (grey levels).
BORDER_MARGIN = 12.0
# A canvas-sized picture is already shaped like MNIST (a dataset digit saved as a PNG) when its paper is
# black, its ink reaches full strength, the ink's longer side is the digit box (to this many pixels: MNIST's
# own digits measure 17-20 at INK_LEVEL, 20 from their faintest pixel) and its centre of mass is on the
# centre (within this many pixels; MNIST's are within 0.5).
SHAPED_PAPER = 8
SHAPED_PEAK = 200
SHAPED_BOX_SLACK = 3
SHAPED_CENTRE_SLACK = 1.0


class BlankImage(Exception):
    """The picture holds no digit: no ink stands out, or too little of it. The service answers it as ``no_digit``."""


def check_not_blank(arr: np.ndarray) -> None:
    """Raise BlankImage when a (28x28, 0..255, bright-ink) array holds (almost) no ink."""
    ink = int(np.count_nonzero(arr >= INK_LEVEL))
    if ink < MIN_INK_PIXELS_28:
        raise BlankImage(f"no digit found: only {ink} ink pixels (need at least {MIN_INK_PIXELS_28} at >= 64 of 255)")


def to_mnist(grey: np.ndarray, *, canvas: int, digit_box: int) -> np.ndarray:
    """uint8 grey [H, W] with bright ink -> float32 [canvas, canvas] in 0..255, the digit fitted to ``digit_box``.
    Not softened: every input alike is, before the model (``digits.softening``).

    Raises BlankImage when no ink stands out from the background.
    """
    if grey.ndim != 2 or grey.size == 0:
        raise BlankImage("no digit found: empty image")
    if not 0 < digit_box <= canvas:
        raise ValueError("digit_box must be in 1..canvas")
    if shaped_like_mnist(grey, canvas=canvas, digit_box=digit_box):
        # The model's own format already: cleaning and refitting would only move it away from what it learnt.
        return grey.astype(np.float32)
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


def shaped_like_mnist(grey: np.ndarray, *, canvas: int, digit_box: int) -> bool:
    """Whether a uint8 bright-ink picture is already an MNIST input: canvas-sized, black paper, full-strength
    ink fitted to the digit box and centred by its centre of mass."""
    if grey.shape != (canvas, canvas):
        return False
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    border = border_pixels(grey)
    # The border's median at most SHAPED_PAPER: half of it or more that dark (a count, cheaper than a median).
    if 2 * np.count_nonzero(border <= SHAPED_PAPER) < border.size or int(grey.max()) < SHAPED_PEAK:
        return False
    _, _, w, h = cv2.boundingRect((grey >= INK_LEVEL).view(np.uint8))
    if not digit_box - SHAPED_BOX_SLACK <= max(w, h) <= digit_box:
        return False
    moments = cv2.moments(grey)  # a third of centre_of_mass's cost; uint8 is never read as points; m00 > 0 (peak)
    cy, cx = moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]
    return abs(cy - canvas / 2) <= SHAPED_CENTRE_SLACK and abs(cx - canvas / 2) <= SHAPED_CENTRE_SLACK


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    """(row, column) of a 2-D picture's centre of mass; its sum must be positive.

    Not cv2.moments: it reads any N x 2 array as N points, so a single stroke scaled to 2 px wide (a drawn 1)
    got a centre far outside its patch and landed in the canvas's corner.
    """
    h, w = x.shape
    total = float(x.sum())
    return float(x.sum(axis=1) @ np.arange(h)) / total, float(x.sum(axis=0) @ np.arange(w)) / total


def shrink(grey: np.ndarray, limit: int) -> np.ndarray:
    """uint8 [h, w] averaged down by the smallest whole factor that brings the longer side to ``limit`` or less.

    A whole factor is OpenCV's fast path for area averaging (measured 0.1 ms against 2-3 ms for a
    fractional one on a few hundred pixels a side); the last rows and columns past a multiple go.
    """
    h, w = grey.shape
    factor = -(-max(h, w) // limit)
    if factor <= 1:
        return grey
    size = (max(1, w // factor), max(1, h // factor))
    return cv2.resize(grey[: size[1] * factor, : size[0] * factor], size, interpolation=cv2.INTER_AREA)


def border_pixels(x: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of a 2-D picture, as one flat array (corners counted twice)."""
    return np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])


def grey_percentile(values: np.ndarray, q: float) -> int:
    """The ``q``-th percentile of non-negative whole numbers: uint8 pixels, or offsets such as 0..510 (the
    smallest value with at least q % at or below it)."""
    return grey_percentiles(values, q)[0]


def grey_percentiles(values: np.ndarray, *qs: float) -> tuple[int, ...]:
    """Several percentiles as ``grey_percentile`` gives them, from one count of the values.

    From a histogram: one counting pass, where np.percentile converts and partitions
    (measured 0.2 ms against 3.3 ms on 65k pixels).
    """
    cumulative = np.bincount(values.ravel(), minlength=256).cumsum()
    targets = np.maximum(1.0, np.asarray(qs, dtype=np.float64) / 100.0 * cumulative[-1])
    return tuple(int(i) for i in np.searchsorted(cumulative, targets))


def _working_copy(grey: np.ndarray) -> np.ndarray:
    """uint8 [h, w] with the longer side at most WORK_SIDE and pixel-sized noise averaged away."""
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    if max(grey.shape) > WORK_SIDE:
        return shrink(grey, WORK_SIDE)  # area averaging is the denoising
    radius = max(grey.shape) // 256
    if radius:
        grey = cv2.blur(grey, (2 * radius + 1, 2 * radius + 1))
    return grey


def background_surface(x: np.ndarray) -> np.ndarray:
    """The paper under the ink: a grey opening wider than any stroke, capped at what the border shows.

    The opening (a minimum, then a maximum, over a square an eighth of the picture wide) removes
    every bright structure narrower than the square, strokes included, and keeps the paper with its
    gradients and the sharp edge of a shadow. Large filled shapes (a garment, a blot) would be kept
    as paper too and hollowed out into digit-like outlines, so the paper is capped at the brightest
    the border shows: a gradient or a shadow reaches the border, a drawn shape does not.
    """
    h, w = x.shape
    side = max(3, max(h, w) // 8) | 1
    surface = cv2.morphologyEx(x, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (side, side)))
    border = border_pixels(x)
    cap = min(255, round(grey_percentile(border, 95) + BORDER_MARGIN))
    return np.minimum(surface, np.uint8(cap))


def suppress_background(x: np.ndarray) -> np.ndarray:
    """uint8 [H, W] bright ink on any background -> float32, 0 background, ink stretched to ~255.

    Raises BlankImage when the brightest ink barely stands out from the paper.
    """
    d = x.astype(np.float32)
    d -= background_surface(x)
    # The paper's level and noise come from the border: when a shape fills most
    # of the picture, the median pixel is the shape, not the paper.
    sample = border_pixels(d)
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
    d -= floor
    d *= 255.0 / (ink_level - floor)
    return np.clip(d, 0.0, 255.0, out=d)


def _drop_speckle(ink: np.ndarray) -> np.ndarray:
    """Zero ink groups much smaller than the largest one (JPEG noise, dust, paper grain) and, when the
    largest is small in the frame, the others that touch the frame's edge (see SCENE_FACTOR) or are as thin
    as a ruled line (RULE_THICKNESS)."""
    mask = (ink >= INK_LEVEL).view(np.uint8)
    # Block-based labelling (Grana's BBDT): measured 0.23 ms against 0.54 ms for the default on a canvas.
    count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, cv2.CV_32S, cv2.CCL_BBDT)
    if count <= 2:  # the background and at most one group
        return ink
    areas = stats[:, cv2.CC_STAT_AREA].copy()
    areas[0] = 0
    along = _along_an_edge(labels, count)
    if areas[~along].max() >= EDGE_REST * ink.size:
        areas[along] = 0
    keep = areas >= MIN_COMPONENT_SHARE * areas.max()
    left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right, bottom = left + stats[:, cv2.CC_STAT_WIDTH], top + stats[:, cv2.CC_STAT_HEIGHT]
    h, w = ink.shape
    at_edge = (left == 0) | (top == 0) | (right == w) | (bottom == h)
    length = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])  # each group's longer side
    largest = int(areas.argmax())
    if length[largest] * SCENE_FACTOR <= min(h, w):
        inside = np.flatnonzero(keep & ~at_edge)
        if at_edge[largest] and inside.size and 2 * areas[inside].max() >= areas[largest]:
            # A shadow's corner at the edge outweighs a faint digit inside the frame: the digit is the inside group.
            largest = int(inside[areas[inside].argmax()])
        at_edge[largest] = False  # the digit itself may be cut by the frame
        keep &= ~at_edge
        thin = areas <= RULE_THICKNESS * length  # tilted too: its area, not its box, says how thick it is
        thin[largest] = False
        keep &= ~thin
    keep = keep.view(np.uint8)
    kept = keep[labels]
    # Grow by a pixel or two so the faint anti-aliased rim of kept strokes survives.
    rim = 1 + max(ink.shape) // _CC_SIDE
    kept = cv2.dilate(kept, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * rim + 1, 2 * rim + 1)))
    return np.where(kept.view(bool), ink, np.float32(0.0))


def _along_an_edge(labels: np.ndarray, count: int) -> np.ndarray:
    """Per group, whether it covers EDGE_CONTACT or more of one side of the frame (the background never)."""
    h, w = labels.shape
    contact = np.zeros(count)
    for line, length in ((labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h)):
        contact = np.maximum(contact, np.bincount(line, minlength=count) / length)
    return (contact >= EDGE_CONTACT) & (np.arange(count) > 0)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    x, y, w, h = cv2.boundingRect((ink >= INK_LEVEL).view(np.uint8))
    return ink[y : y + h, x : x + w]


def _scale_to_box(patch: np.ndarray, box: int) -> np.ndarray:
    h, w = patch.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Area averaging when shrinking is the anti-aliasing MNIST's own scaling had.
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(patch, dtype=np.float32), size, interpolation=interpolation)
    return _at_full_strength(resized)  # thin pen strokes lose it when scaled down


def _at_full_strength(image: np.ndarray) -> np.ndarray:
    """float32 ink scaled in place so its peak is 255, as MNIST's always is."""
    peak = float(image.max())
    if peak > 0:
        image *= 255.0 / peak
    return np.clip(image, 0.0, 255.0, out=image)  # float rounding may leave the peak a hair over 255


def _place_by_centre_of_mass(patch: np.ndarray, canvas: int) -> np.ndarray:
    """Put the patch so its centre of mass lands on pixel canvas/2 (14,14 as measured on MNIST).

    The offset is clamped so the whole digit stays on the canvas; MNIST never cut digits.
    """
    h, w = patch.shape
    cy, cx = centre_of_mass(patch) if patch.sum() > 0 else ((h - 1) / 2, (w - 1) / 2)
    top = min(max(round(canvas / 2 - cy), 0), canvas - h)
    left = min(max(round(canvas / 2 - cx), 0), canvas - w)
    out = np.zeros((canvas, canvas), dtype=np.float32)
    out[top : top + h, left : left + w] = patch
    return out
