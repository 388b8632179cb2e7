"""Pictures from clients to model inputs: decode the bytes, then shape the digit like MNIST.

Decoding is ``imaging.decode_luma`` (the service's own: untrusted bytes); the shaping is
``digits.normalise``, shared with training. Its BlankImage becomes the service's NoDigit here, so
everything under ``service.inputs`` raises domain errors only. The canvas and the digit box are the
served model's facts (``LoadedModel.preprocessing``): callers pass them, nothing here assumes them.
"""

from __future__ import annotations

import numpy as np

from digits import normalise as shared
from service.errors import NoDigit
from service.inputs.imaging import decode_luma, make_ink_bright, on_plain_paper


def image_to_mnist(data: bytes, *, max_side: int, max_pixels: int, canvas: int, digit_box: int) -> np.ndarray:
    """PNG/JPEG bytes -> float32 [canvas, canvas] in 0..255, bright ink; raises domain errors only."""
    luma = decode_luma(data, max_side=max_side, max_pixels=max_pixels)
    if shared.shaped_like_mnist(luma, canvas=canvas, digit_box=digit_box) and on_plain_paper(luma):
        # A dataset digit saved as a picture is the model's input already: on plain paper with a dark border the
        # polarity test keeps it as it is, and it would be a fifth of a 28x28 PNG's path (benchmarks/README.md).
        return luma.astype(np.float32)
    return to_mnist(make_ink_bright(luma), canvas=canvas, digit_box=digit_box)


def to_mnist(grey: np.ndarray, *, canvas: int, digit_box: int) -> np.ndarray:
    """``digits.normalise.to_mnist``, raising NoDigit for a picture without a digit."""
    try:
        return shared.to_mnist(grey, canvas=canvas, digit_box=digit_box)
    except shared.BlankImage as exc:
        raise NoDigit(str(exc)) from None


def check_not_blank(arr: np.ndarray) -> None:
    """Raise NoDigit when a (28x28, 0..255, bright-ink) array holds (almost) no ink."""
    try:
        shared.check_not_blank(arr)
    except shared.BlankImage as exc:
        raise NoDigit(str(exc)) from None
