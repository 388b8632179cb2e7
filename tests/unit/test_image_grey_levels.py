"""The exact grey a decoded picture gets, and where the size and frame limits fall.

test_imaging.py checks that every mode reads about right; these pin the values people notice: black ink is 0,
not 1; half-transparent ink is mid grey; NaN pixels in a float TIFF-style image are paper; 16-bit pictures
holding 8-bit values are not read as black; the limits refuse one pixel past them and not at them.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.errors import ImageTooLarge, InvalidImage, MultiFrameImage
from service.inputs.imaging import decode_grey, make_ink_bright, to_grey
from tests.unit.input_corpus import MAX_PIXELS, MAX_SIDE, apng, png_claiming, seven_small


def decode(data: bytes, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    return decode_grey(data, max_side=max_side, max_pixels=max_pixels)


def canvas(ink: tuple[int, int, int, int]) -> Image.Image:
    """A transparent 40x40 canvas with a 10x30 stroke of ``ink`` (RGBA)."""
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    img.paste(ink, (15, 5, 25, 35))
    return img


def test_opaque_black_ink_on_a_transparent_canvas_is_full_ink_on_black() -> None:
    # On a transparent layer the painted pixels are the ink, whatever their colour (imaging._composite).
    grey = to_grey(canvas((0, 0, 0, 255)))
    assert grey[20, 20] == 255 and grey[0, 0] == 0


@pytest.mark.parametrize("alpha", [128, 64])
def test_half_transparent_ink_is_half_strength_ink(alpha: int) -> None:
    assert to_grey(canvas((0, 0, 0, alpha)))[20, 20] == alpha


@pytest.mark.parametrize("mode", ["RGBX", "HSV"])
def test_other_colour_modes_read_as_the_same_grey(mode: str) -> None:
    picture = seven_small("RGB")
    np.testing.assert_array_equal(to_grey(picture.convert(mode)), to_grey(picture))


def test_a_lab_picture_is_read_not_refused() -> None:
    grey = to_grey(Image.new("LAB", (4, 4), (200, 128, 128)))
    assert grey.shape == (4, 4) and grey.dtype == np.uint8


def test_white_ink_on_a_transparent_layer_is_white_on_black() -> None:
    grey = to_grey(canvas((255, 255, 255, 255)))
    assert grey[20, 20] == 255 and grey[0, 0] == 0


def test_a_palette_image_with_alpha_reads_as_its_rgba_form() -> None:
    rgba = canvas((0, 0, 0, 255))
    pa = rgba.convert("PA")
    assert pa.mode == "PA"
    np.testing.assert_array_equal(to_grey(pa), to_grey(rgba))


def test_non_finite_pixels_of_a_float_image_are_paper() -> None:
    values = np.array([[0.5, np.nan], [np.inf, -np.inf]], dtype=np.float32)
    assert to_grey(Image.fromarray(values, mode="F")).tolist() == [[128, 0], [0, 0]]


@pytest.mark.parametrize(("peak", "grey"), [(1.0, 255), (200.0, 200), (255.0, 255)])
def test_a_float_image_is_read_as_0_to_1_or_else_0_to_255(peak: float, grey: int) -> None:
    values = np.array([[0.0, peak]], dtype=np.float32)
    assert to_grey(Image.fromarray(values, mode="F")).tolist() == [[0, grey]]


@pytest.mark.parametrize(("peak", "grey"), [(255, 255), (65535, 255), (257 * 100, 100)])
def test_a_16_bit_image_holding_8_bit_values_is_not_read_as_black(peak: int, grey: int) -> None:
    img = Image.fromarray(np.array([[0, peak]], dtype=np.uint16))
    assert img.mode.startswith("I;16")
    assert to_grey(img).tolist() == [[0, grey]]


def test_a_single_white_pixel_reads_as_blank() -> None:
    assert make_ink_bright(np.full((1, 1), 255, dtype=np.uint8)).tolist() == [[0]]


@pytest.mark.parametrize(("level", "out"), [(127, 127), (128, 127), (200, 55)])
def test_a_flat_picture_is_paper_from_128_up(level: int, out: int) -> None:
    assert make_ink_bright(np.full((30, 30), level, dtype=np.uint8)).max() == out


@pytest.mark.parametrize(("width", "height"), [(MAX_SIDE, 1), (1, MAX_SIDE), (2000, 2000)])
def test_a_picture_at_the_limits_is_decoded(width: int, height: int) -> None:
    assert decode(png_claiming(width, height, rows=height)).shape == (height, width)


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        (MAX_SIDE + 1, 1, f"image is {MAX_SIDE + 1}x1 px; the limit is {MAX_SIDE} px a side"),
        (1, MAX_SIDE + 1, f"image is 1x{MAX_SIDE + 1} px; the limit is {MAX_SIDE} px a side"),
        (2001, 2000, f"image is 2001x2000 = 4002000 px; the limit is {MAX_PIXELS} px"),
    ],
)
def test_one_pixel_past_a_limit_is_image_too_large(width: int, height: int, message: str) -> None:
    with pytest.raises(ImageTooLarge) as info:
        decode(png_claiming(width, height))
    assert info.value.message == message


def test_a_header_claiming_5000_px_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        decode(png_claiming(5000, 5000))


def test_a_header_claiming_no_pixels_is_an_invalid_image() -> None:
    with pytest.raises(InvalidImage):
        decode(png_claiming(0, 5))


def test_two_frames_are_refused_like_twenty() -> None:
    with pytest.raises(MultiFrameImage):
        decode(apng(frames=2))
