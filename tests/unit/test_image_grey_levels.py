"""The exact grey a decoded picture gets, and where the size and frame limits fall.

test_imaging.py checks that every mode reads about right; these pin the values people notice: black ink is 0,
not 1; half-transparent ink is mid grey; 16-bit pictures holding 8-bit values are not read as black, and every
16-bit level lands on its nearest 8-bit one; the limits refuse one pixel past them and not at them.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.errors import ImageTooLarge, InvalidImage, MultiFrameImage
from service.inputs.imaging import decode_luma, make_ink_bright
from tests.unit.input_corpus import MAX_PIXELS, MAX_SIDE, apng, decoded_grey, png_claiming


def decode(data: bytes, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    return make_ink_bright(decode_luma(data, max_side=max_side, max_pixels=max_pixels))


def canvas(ink: tuple[int, int, int, int]) -> Image.Image:
    """A transparent 40x40 canvas with a 10x30 stroke of ``ink`` (RGBA)."""
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    img.paste(ink, (15, 5, 25, 35))
    return img


def test_opaque_black_ink_on_a_transparent_canvas_is_full_ink_on_black() -> None:
    # On a transparent layer the painted pixels are the ink, whatever their colour (imaging._composite).
    grey = decoded_grey(canvas((0, 0, 0, 255)))
    assert grey[20, 20] == 255 and grey[0, 0] == 0


@pytest.mark.parametrize("alpha", [128, 64])
def test_half_transparent_ink_is_half_strength_ink(alpha: int) -> None:
    assert decoded_grey(canvas((0, 0, 0, alpha)))[20, 20] == alpha


def test_white_ink_on_a_transparent_layer_is_white_on_black() -> None:
    grey = decoded_grey(canvas((255, 255, 255, 255)))
    assert grey[20, 20] == 255 and grey[0, 0] == 0


@pytest.mark.parametrize(("peak", "grey"), [(255, 255), (256, 1), (65535, 255), (257 * 100, 100)])
def test_a_16_bit_image_holding_8_bit_values_is_not_read_as_black(peak: int, grey: int) -> None:
    # Up to 255 the values are 8-bit ones; one past it, the picture is a 16-bit one and 256 is nearly black.
    img = Image.fromarray(np.array([[0, peak]], dtype=np.uint16))
    assert img.mode.startswith("I;16")
    assert decoded_grey(img).tolist() == [[0, grey]]


def test_every_16_bit_level_maps_to_the_nearest_8_bit_one() -> None:
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    grey = decoded_grey(Image.fromarray(levels))
    np.testing.assert_array_equal(grey, np.rint(levels / 257.0).astype(np.uint8))  # 33025 is 128.502 steps: 129


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


@pytest.mark.parametrize(("stroke_alpha", "drawing"), [(103, False), (104, True)])
def test_a_translucent_sheet_is_composited_and_a_drawing_on_a_clear_layer_is_its_alpha(
    stroke_alpha: int, drawing: bool
) -> None:
    # A layer is a drawing only when its opacity spans more than 63 levels: black at 40 with a stroke at 103 is a
    # tinted sheet composited onto white paper (255 - alpha); with a stroke at 104 it is the painted pixels.
    sheet = Image.new("RGBA", (40, 40), (0, 0, 0, 40))
    sheet.paste((0, 0, 0, stroke_alpha), (15, 5, 25, 35))
    grey = decoded_grey(sheet)
    assert (grey[0, 0], grey[20, 20]) == ((40, stroke_alpha) if drawing else (215, 255 - stroke_alpha))


@pytest.mark.parametrize(
    ("left", "right", "drawing"), [(127, 127, True), (127, 128, False), (128, 128, False)], ids=["under", "at", "over"]
)
def test_a_layer_whose_edge_is_half_opaque_or_more_is_a_picture_on_white(left: int, right: int, drawing: bool) -> None:
    # The painted pixels are the ink only while the layer's edge is mostly clear: its median opacity under 127.5.
    sheet = Image.new("RGBA", (40, 40), (0, 0, 0, left))
    sheet.paste((0, 0, 0, right), (20, 0, 40, 40))
    sheet.paste((0, 0, 0, 255), (15, 5, 25, 35))
    grey = decoded_grey(sheet)
    edges = (grey[20, 0], grey[20, 39])
    assert edges == ((left, right) if drawing else (255 - left, 255 - right))
    assert grey[20, 20] == (255 if drawing else 0)
