"""A PNG's pixels come from libpng (imagecodecs), its header, frames and EXIF from Pillow and the chunk walk.

What that split must not change for a user: no log lines or stderr about a file, a colour key read as the
paper's colour, an EXIF orientation wherever its chunk lies, and 16-bit pictures brought to 8 bits in one pass.
"""

from __future__ import annotations

import logging
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from service.inputs.file_structure import PNG_MAGIC
from tests.unit.input_corpus import decoded_grey, encode, png_chunk, read_luma, seven_small


def test_libpng_warnings_about_a_file_write_no_log_line_and_nothing_on_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # An interlaced picture makes libpng warn once; a grey picture's sBIT is one byte, so each of these two-byte
    # ones warns again: a small upload could otherwise write a hundred lines.
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 1)
    odd = png_chunk(b"sBIT", b"\t\t") * 100
    data = (
        PNG_MAGIC
        + png_chunk(b"IHDR", ihdr)
        + odd
        + png_chunk(b"IDAT", zlib.compress(b"\0\x80"))
        + png_chunk(b"IEND", b"")
    )
    with caplog.at_level(logging.INFO):  # Pillow's own debug lines are a debug level's business
        assert read_luma(data).tolist() == [[128]]
    assert caplog.records == []
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize(("paper", "ink"), [(255, 0), (0, 255)], ids=["light", "dark"])
def test_a_colour_key_is_the_papers_colour_not_transparency(mode: str, paper: int, ink: int) -> None:
    # An anti-aliased stroke on paper whose colour is the file's transparent key: read as the picture shows it,
    # its faint edge pixels stay faint (as a binary alpha they would all be full ink) and light ink on a dark
    # key stays ink.
    grey = np.full((40, 40), paper, dtype=np.uint8)
    grey[5:35, 18:22] = ink
    grey[5:35, 17] = grey[5:35, 22] = (paper + ink) // 2
    img = Image.fromarray(grey).convert(mode)
    key = paper if mode == "L" else (paper, paper, paper)
    read = decoded_grey(img, transparency=key)
    np.testing.assert_array_equal(read, grey)
    assert read.flags.c_contiguous  # not a view holding libpng's alpha band too


def test_a_coloured_picture_with_a_colour_key_is_read_by_its_luminance() -> None:
    rgb = np.full((40, 40, 3), 255, dtype=np.uint8)
    rgb[5:35, 18:22] = (200, 30, 30)  # red ink: its luminance, not its red band
    grey = decoded_grey(Image.fromarray(rgb), transparency=(255, 255, 255))
    np.testing.assert_array_equal(grey, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert grey[20, 20] == 81  # 0.299 x 200 + 0.587 x 30 + 0.114 x 30


@pytest.mark.parametrize("mode", ["LA", "RGBA", "P"])
def test_a_pictures_own_transparency_is_kept(mode: str) -> None:
    # Black strokes on a clear layer, with an alpha band or a palette's transparent entry: the painted pixels are
    # the ink (the paper white, the strokes black, if the transparency were lost).
    alpha = np.zeros((40, 40), dtype=np.uint8)
    alpha[5:35, 18:22] = 255
    if mode == "P":
        img = Image.fromarray((alpha > 0).astype(np.uint8), "P")
        img.putpalette([255, 255, 255, 0, 0, 0])
        data = encode(img, "PNG", transparency=0)
    else:
        data = encode(Image.fromarray(np.dstack([np.zeros_like(alpha)] * (len(mode) - 1) + [alpha]), mode), "PNG")
    np.testing.assert_array_equal(read_luma(data), alpha)


@pytest.mark.parametrize("after_the_pixels", [False, True], ids=["before", "after"])
def test_an_exif_orientation_is_applied_wherever_its_chunk_lies(after_the_pixels: bool) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: a quarter turn clockwise makes it upright
    picture = seven_small("L").crop((0, 0, 140, 100))
    data = encode(picture, "PNG", exif=exif)
    if after_the_pixels:
        at = data.index(b"eXIf") - 4
        chunk = data[at : at + 12 + struct.unpack(">I", data[at : at + 4])[0]]
        data = data.replace(chunk, b"")
        end = data.index(b"IEND") - 4
        data = data[:end] + chunk + data[end:]
        assert data.index(b"eXIf") > data.index(b"IDAT")
    np.testing.assert_array_equal(read_luma(data), np.rot90(np.asarray(picture), -1))


@pytest.mark.parametrize("overstated", [1000, 0], ids=["cut", "whole-without-its-crc"])
def test_an_exif_chunk_that_runs_past_the_file_turns_nothing(overstated: int) -> None:
    """A truncated file's last chunk, an eXIf whose length claims more bytes than are left: its EXIF is cut, so
    whatever orientation its first bytes hold is not trusted; the pixels read as they are. One whose block is
    whole, though the file ends before its checksum, still turns the picture."""
    exif = Image.Exif()
    exif[0x0112] = 6
    picture = seven_small("L").crop((0, 0, 140, 100))
    data = encode(picture, "PNG", exif=exif)
    at = data.index(b"eXIf") - 4
    length = struct.unpack(">I", data[at : at + 4])[0]
    chunk = data[at : at + 12 + length]
    data = data.replace(chunk, b"")
    # The end chunk lost; the eXIf last, without its checksum.
    data = data[: data.index(b"IEND") - 4] + struct.pack(">I", length + overstated) + chunk[4:-4]
    upright = np.asarray(picture) if overstated else np.rot90(np.asarray(picture), -1)
    np.testing.assert_array_equal(read_luma(data), upright)


def test_a_16_bit_colour_picture_is_brought_to_8_bits_without_float_copies() -> None:
    rgba = np.full((1000, 1000, 4), 65535, dtype=np.uint16)
    rgba[..., :3] = 257 * 100
    ok, encoded = cv2.imencode(".png", rgba)
    assert ok
    tracemalloc.start()
    try:
        grey = read_luma(encoded.tobytes())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (grey == 100).all()
    # libpng's 8 MB of 16-bit pixels, then uint8 ones; a float64 copy of them alone would be 32 MB.
    assert peak < 2 * rgba.nbytes
