"""Synthetic non-digits for outlier exposure (Hendrycks et al., 2019).

The network is taught to spread its probability evenly over the ten digits
on things that are not digits, which makes its confidence and features
useful to the ``not_a_digit`` guard. No real non-digit data set is used, so
the refusal rates measured on Fashion-MNIST or photos stay honest.

Every outlier is drawn the way the service presents inputs: bright on dark,
inside a ~20 px box, roughly centred.
"""

from __future__ import annotations

import string

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from digits import normalise
from digits.softening import INPUT_SOFTENING, soften
from registry.layout import IMAGE_SIDE as SIDE

LETTERS = [c for c in string.ascii_letters if c not in "DQUuJjLlTtGCcOoIiSsZzgqbB"]  # drop digit look-alikes


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("L", (SIDE, SIDE), 0)
    return img, ImageDraw.Draw(img)


def _box(rng: np.random.Generator) -> tuple[int, int, int, int]:
    w, h = rng.integers(12, 21, size=2)
    x0, y0 = (SIDE - w) // 2 + rng.integers(-2, 3), (SIDE - h) // 2 + rng.integers(-2, 3)
    return int(x0), int(y0), int(x0 + w), int(y0 + h)


def solid_shape(rng: np.random.Generator) -> np.ndarray:
    """Filled, textured blobs: the silhouettes of clothes, bags, shoes, stamps."""
    img, draw = _canvas()
    x0, y0, x1, y1 = _box(rng)
    fill = int(rng.integers(90, 256))
    kind = rng.integers(0, 3)
    if kind == 0:
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif kind == 1:
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        points = [(int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1))) for _ in range(rng.integers(4, 8))]
        draw.polygon(points, fill=fill)
    arr = np.asarray(img, dtype=np.float32)
    texture = rng.normal(1.0, rng.uniform(0.0, 0.35), size=arr.shape)
    return np.clip(arr * texture, 0, 255)


def silhouette(rng: np.random.Generator) -> np.ndarray:
    """A union of two or three filled parts: legs of trousers, a shoe's sole and upper, a dress."""
    img, draw = _canvas()
    fill = int(rng.integers(90, 256))
    x0, y0, x1, y1 = _box(rng)
    for _ in range(int(rng.integers(2, 4))):
        a, b = sorted(rng.integers(x0, x1 + 1, size=2))
        c, d = sorted(rng.integers(y0, y1 + 1, size=2))
        if b - a < 3 or d - c < 3:
            continue
        (draw.rectangle if rng.random() < 0.6 else draw.ellipse)((int(a), int(c), int(b), int(d)), fill=fill)
    arr = np.asarray(img, dtype=np.float32)
    return np.clip(arr * rng.normal(1.0, rng.uniform(0.0, 0.3), size=arr.shape), 0, 255)


def texture(rng: np.random.Generator) -> np.ndarray:
    """Noise, stripes and checkerboards inside the digit box."""
    x0, y0, x1, y1 = _box(rng)
    kind = rng.integers(0, 3)
    h, w = y1 - y0, x1 - x0
    if kind == 0:
        patch = rng.uniform(0, 255, size=(h, w))
    elif kind == 1:
        period = int(rng.integers(2, 6))
        stripes = (np.arange(max(h, w)) // period) % 2 * 255.0
        patch = np.tile(stripes[:w], (h, 1)) if rng.random() < 0.5 else np.tile(stripes[:h, None], (1, w))
    else:
        cell = int(rng.integers(2, 6))
        yy, xx = np.mgrid[0:h, 0:w]
        patch = (((yy // cell) + (xx // cell)) % 2) * 255.0
    arr = np.zeros((SIDE, SIDE), dtype=np.float32)
    arr[y0:y1, x0:x1] = patch
    return arr


def letter(rng: np.random.Generator) -> np.ndarray:
    """A handwriting-sized letter that is not a digit look-alike."""
    font = ImageFont.load_default(size=int(rng.integers(18, 26)))
    img, draw = _canvas()
    char = LETTERS[int(rng.integers(0, len(LETTERS)))]
    draw.text((SIDE / 2, SIDE / 2), char, fill=255, font=font, anchor="mm", stroke_width=int(rng.integers(0, 2)))
    img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
    return np.asarray(img.filter(ImageFilter.GaussianBlur(0.5)), dtype=np.float32)


def scrambled_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real digit cut into 7x7 tiles and shuffled: digit strokes, no digit."""
    tiles = digit.reshape(4, 7, 4, 7).transpose(0, 2, 1, 3).reshape(16, 7, 7)
    tiles = tiles[rng.permutation(16)]
    return tiles.reshape(4, 4, 7, 7).transpose(0, 2, 1, 3).reshape(SIDE, SIDE).astype(np.float32)


def as_served(arr: np.ndarray) -> np.ndarray | None:
    """The outlier as the service's image path presents it: cropped, 20 px, centred by mass, softened (None if
    blank)."""
    try:
        fitted = normalise.to_mnist(
            np.clip(arr, 0, 255).astype(np.uint8), canvas=SIDE, digit_box=normalise.MNIST_DIGIT_BOX
        )
    except normalise.BlankImage:
        return None
    return soften(fitted[np.newaxis], INPUT_SOFTENING)[0]


def synthetic_outliers(n: int, digits: np.ndarray, seed: int) -> np.ndarray:
    """uint8 [n, 28, 28] non-digits from five generators; half as the image path normalises them."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, SIDE, SIDE), dtype=np.uint8)
    for i in range(n):
        kind = i % 5
        if kind == 0:
            arr = solid_shape(rng)
        elif kind == 1:
            arr = silhouette(rng)
        elif kind == 2:
            arr = texture(rng)
        elif kind == 3:
            arr = letter(rng)
        else:
            arr = scrambled_digit(digits[int(rng.integers(0, len(digits)))], rng)
        served = as_served(arr) if rng.random() < 0.5 else None
        arr = served if served is not None else arr
        out[i] = np.clip(arr, 0, 255).astype(np.uint8)
    return out
