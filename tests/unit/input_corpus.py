"""In-code builders for digit images and a hostile-input corpus (no binary files committed).

Shared by the unit tests of the input path; the HTTP tests may reuse ``hostile_images``
and ``hostile_json`` to post the same cases through the API.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

MAX_SIDE = 4096
MAX_PIXELS = 4_000_000

# ---- drawing ----------------------------------------------------------------------------------------------


def draw_seven(
    size: tuple[int, int] = (600, 800),
    *,
    origin: tuple[int, int] = (330, 140),
    scale: float = 1.0,
    ink: int = 30,
    paper: int | None = 200,
    gradient: bool = True,
    noise: float = 6.0,
    width: int = 40,
    seed: int = 0,
) -> Image.Image:
    """A thick '7', dark ink on light (optionally gradient, noisy) paper, off-centre: an "L" image."""
    w, h = size
    x0, y0 = origin
    if gradient:
        xx = np.linspace(0.0, 1.0, w)[None, :]
        yy = np.linspace(0.0, 1.0, h)[:, None]
        bg = 150.0 + 70.0 * xx + 25.0 * yy
    else:
        bg = np.full((h, w), float(paper if paper is not None else 255))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    pts = [(x0, y0), (x0 + 200 * scale, y0), (x0 + 70 * scale, y0 + 450 * scale)]
    ImageDraw.Draw(img).line(pts, fill=ink, width=max(1, round(width * scale)), joint="curve")
    arr = np.asarray(img, dtype=np.float64)
    if noise:
        arr = arr + np.random.default_rng(seed).normal(0.0, noise, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def draw_one_rgba(size: tuple[int, int] = (280, 280)) -> Image.Image:
    """A canvas drawing: black '1' with anti-aliased edges on a fully transparent RGBA canvas."""
    w, h = size
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(img).line(
        [(w * 0.45, h * 0.2), (w * 0.55, h * 0.15), (w * 0.55, h * 0.85)], fill=(0, 0, 0, 255), width=18
    )
    return img


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def read_luma(data: bytes) -> np.ndarray:
    """PNG or JPEG bytes read by the service's decoder under the corpus's limits: the grey plane as sent, polarity
    untouched."""
    from service.inputs.imaging import decode_luma

    return decode_luma(data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)


def decoded_grey(img: Image.Image, fmt: str = "PNG", **params: object) -> np.ndarray:
    """``img`` saved as ``fmt`` and read back by ``read_luma``."""
    return read_luma(encode(img, fmt, **params))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, *, rows: int = 1) -> bytes:
    """A grey PNG whose header claims width x height but whose data is a few zero rows (a bomb shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * ((width + 1) * rows), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b"")


def zero_bomb(width: int, height: int) -> bytes:
    """A complete, valid PNG of width x height zeros: tiny on the wire, large once decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    raw = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b"")


def seven_small(mode: str = "L") -> Image.Image:
    """A 140x140 '7' (dark on white, no noise) converted to ``mode``."""
    return draw_seven((140, 140), origin=(30, 20), scale=0.22, gradient=False, paper=255, noise=0).convert(mode)


def exif_rotated_jpeg() -> tuple[bytes, Image.Image]:
    """A JPEG stored rotated with EXIF orientation 6 (rotate 90° CW to view), and the upright image."""
    upright = seven_small()
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 90° CCW; orientation 6 undoes it
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=95, exif=exif), upright


def apng(frames: int = 3) -> bytes:
    # Pillow merges identical frames, so each one differs.
    imgs = [seven_small().rotate(10 * i, fillcolor=255) for i in range(frames)]
    return encode(imgs[0], "PNG", save_all=True, append_images=imgs[1:], duration=100)


def i16_png() -> bytes:
    arr = (np.asarray(seven_small(), dtype=np.uint16) * 257).astype(np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    return encode(img, "PNG")


def palette_png(transparent: bool) -> bytes:
    img = seven_small().convert("P")
    return encode(img, "PNG", transparency=255) if transparent else encode(img, "PNG")


def la_png() -> bytes:
    grey = seven_small()
    alpha = Image.new("L", grey.size, 255)
    return encode(Image.merge("LA", (grey, alpha)), "PNG")


# ---- the corpus -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    payload: Callable[[], object]
    expect: str  # a ServiceError code, or "ok" for an input that must normalise to a digit


def _text(s: str) -> Callable[[], bytes]:
    return lambda: s.encode()


def _truncated(build: Callable[[], bytes], keep: float) -> Callable[[], bytes]:
    return lambda: (lambda b: b[: int(len(b) * keep)])(build())


def _jpeg_seven() -> bytes:
    return encode(draw_seven(), "JPEG", quality=80)


def _png_seven() -> bytes:
    return encode(draw_seven(noise=0), "PNG")


def _corrupt_crc() -> bytes:
    data = bytearray(encode(seven_small(), "PNG"))
    data[29] ^= 0xFF  # IHDR CRC
    return bytes(data)


def _jpeg_garbage_exif() -> bytes:
    data = encode(seven_small(), "JPEG", quality=90)
    app1 = b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08" + b"\xff" * 40
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


HOSTILE_IMAGES: tuple[Case, ...] = (
    # formats other than PNG/JPEG, by magic bytes
    Case("gif", lambda: encode(seven_small(), "GIF"), "unsupported_image_format"),
    Case("bmp", lambda: encode(seven_small(), "BMP"), "unsupported_image_format"),
    Case("tiff", lambda: encode(seven_small(), "TIFF"), "unsupported_image_format"),
    Case("webp", lambda: encode(seven_small(), "WEBP"), "unsupported_image_format"),
    Case("pdf", lambda: encode(seven_small(), "PDF"), "unsupported_image_format"),
    Case("ico", lambda: encode(seven_small(), "ICO"), "unsupported_image_format"),
    Case("eps", _text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"), "unsupported_image_format"),
    Case("svg", _text('<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>'), "unsupported_image_format"),
    Case("xml_svg", _text('<?xml version="1.0"?><svg/>'), "unsupported_image_format"),
    Case("text", _text("hello, this is not an image"), "unsupported_image_format"),
    Case("json_bytes", _text('{"image": [[0]]}'), "unsupported_image_format"),
    Case("empty", lambda: b"", "unsupported_image_format"),
    Case("nul_bytes", lambda: b"\x00" * 4096, "unsupported_image_format"),
    # broken PNG/JPEG
    Case("png_magic_only", lambda: b"\x89PNG\r\n\x1a\n", "invalid_image"),
    Case("jpeg_magic_only", lambda: b"\xff\xd8\xff", "invalid_image"),
    Case("jpeg_magic_garbage", lambda: b"\xff\xd8\xff" + bytes(range(256)) * 8, "invalid_image"),
    Case("png_truncated_half", _truncated(_png_seven, 0.5), "invalid_image"),
    Case("png_truncated_header", _truncated(_png_seven, 0.01), "invalid_image"),
    Case("png_no_iend", lambda: _png_seven()[:-12], "ok"),
    Case("jpeg_truncated_half", _truncated(_jpeg_seven, 0.5), "invalid_image"),
    Case("jpeg_truncated_header", lambda: _jpeg_seven()[:100], "invalid_image"),
    Case("png_bad_crc", _corrupt_crc, "invalid_image"),
    Case("png_zero_width", lambda: png_claiming(0, 10), "invalid_image"),
    # size limits and bombs
    Case("bomb_50000x50000", lambda: png_claiming(50_000, 50_000), "image_too_large"),
    Case("bomb_10000x10000", lambda: png_claiming(10_000, 10_000), "image_too_large"),
    Case("over_pixels_3000x3000", lambda: png_claiming(3000, 3000), "image_too_large"),
    Case("over_side_5000x10", lambda: png_claiming(5000, 10), "image_too_large"),
    Case("over_side_jpeg", lambda: encode(Image.new("L", (4100, 8), 255), "JPEG"), "image_too_large"),
    Case("zero_bomb_2000x2000", lambda: zero_bomb(2000, 2000), "no_digit"),
    Case("apng_3_frames", apng, "multi_frame_image"),
    # every mode, on purpose
    Case("mode_1", lambda: encode(seven_small("1"), "PNG"), "ok"),
    Case("mode_L", lambda: encode(seven_small("L"), "PNG"), "ok"),
    Case("mode_P", lambda: palette_png(False), "ok"),
    Case("mode_P_transparency", lambda: palette_png(True), "ok"),
    Case("mode_LA", la_png, "ok"),
    Case("mode_RGB", lambda: encode(seven_small("RGB"), "PNG"), "ok"),
    Case("mode_RGBA_transparent_canvas", lambda: encode(draw_one_rgba(), "PNG"), "ok"),
    Case("mode_I16", i16_png, "ok"),
    Case("mode_CMYK_jpeg", lambda: encode(seven_small("CMYK"), "JPEG", quality=90), "ok"),
    Case("mode_L_jpeg", lambda: encode(seven_small("L"), "JPEG", quality=90), "ok"),
    Case("exif_rotated_jpeg", lambda: exif_rotated_jpeg()[0], "ok"),
    Case("jpeg_garbage_exif", _jpeg_garbage_exif, "ok"),
    Case("photo_jpeg_gradient", _jpeg_seven, "ok"),
    Case("progressive_jpeg", lambda: encode(draw_seven(), "JPEG", quality=70, progressive=True), "ok"),
    Case("big_jpeg_3000x1300", lambda: encode(draw_seven((3000, 1300), scale=2.5), "JPEG", quality=70), "ok"),
    # blank canvases and tiny images
    Case("one_by_one_white", lambda: encode(Image.new("L", (1, 1), 255), "PNG"), "no_digit"),
    Case("one_by_one_black", lambda: encode(Image.new("L", (1, 1), 0), "PNG"), "no_digit"),
    Case("blank_white", lambda: encode(Image.new("L", (280, 280), 255), "PNG"), "no_digit"),
    Case("blank_black", lambda: encode(Image.new("L", (280, 280), 0), "PNG"), "no_digit"),
    Case("blank_grey_jpeg", lambda: encode(Image.new("RGB", (640, 480), (128, 128, 128)), "JPEG"), "no_digit"),
    Case("blank_transparent", lambda: encode(Image.new("RGBA", (280, 280), (0, 0, 0, 0)), "PNG"), "no_digit"),
    Case("blank_paper_photo", lambda: encode(paper_photo(), "JPEG", quality=75), "no_digit"),
    Case("single_dot", lambda: encode(_dot(), "PNG"), "no_digit"),
)


def paper_photo(size: tuple[int, int] = (600, 800), noise: float = 6.0) -> Image.Image:
    """A photo of empty paper: uneven grey plus sensor noise, no ink."""
    w, h = size
    xx = np.linspace(0.0, 1.0, w)[None, :]
    yy = np.linspace(0.0, 1.0, h)[:, None]
    bg = 150.0 + 70.0 * xx + 25.0 * yy + np.random.default_rng(1).normal(0.0, noise, (h, w))
    return Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))


def _dot() -> Image.Image:
    img = Image.new("L", (500, 500), 255)
    ImageDraw.Draw(img).ellipse((240, 240, 243, 243), fill=0)
    return img


def _grid(value: object) -> list[list[object]]:
    rows: list[list[object]] = [[0] * 28 for _ in range(28)]
    for r in range(8, 20):
        rows[r][14] = 255
    rows[3][17] = value
    return rows


def _deep(depth: int) -> object:
    obj: object = 0
    for _ in range(depth):
        obj = [obj]
    return obj


def _valid_json_digit() -> list[list[int]]:
    return [[255 if 8 <= r < 20 and 12 <= c < 16 else 0 for c in range(28)] for r in range(28)]


HOSTILE_JSON: tuple[Case, ...] = (
    Case("nan", lambda: _grid(float("nan")), "invalid_input"),
    Case("infinity", lambda: _grid(float("inf")), "invalid_input"),
    Case("minus_infinity", lambda: _grid(float("-inf")), "invalid_input"),
    Case("bool_true", lambda: _grid(True), "invalid_input"),
    Case("bool_false", lambda: _grid(False), "invalid_input"),
    Case("string", lambda: _grid("255"), "invalid_input"),
    Case("null_value", lambda: _grid(None), "invalid_input"),
    Case("object_value", lambda: _grid({"v": 1}), "invalid_input"),
    Case("negative", lambda: _grid(-1), "invalid_input"),
    Case("above_255", lambda: _grid(256), "invalid_input"),
    Case("huge_int", lambda: _grid(10**400), "invalid_input"),
    Case("nested_value", lambda: _grid([[1]]), "invalid_input"),
    Case("deeply_nested", lambda: _deep(10_000), "invalid_input"),
    Case("null_image", lambda: None, "invalid_input"),
    Case("string_image", lambda: "0" * 784, "invalid_input"),
    Case("flat_784", lambda: [0] * 784, "invalid_input"),
    Case("27_rows", lambda: _valid_json_digit()[:27], "invalid_input"),
    Case("29_cols", lambda: [[*row, 0] for row in _valid_json_digit()], "invalid_input"),
    Case("ragged", lambda: [row[: 28 - (i % 2)] for i, row in enumerate(_valid_json_digit())], "invalid_input"),
    Case("row_is_object", lambda: [{"a": 1}] * 28, "invalid_input"),
    Case("big_28x28x28", lambda: [[[0] * 28] * 28] * 28, "invalid_input"),
    Case("zero_to_one_form", lambda: [[v / 255 for v in row] for row in _valid_json_digit()], "no_digit"),
    Case("blank_zeros", lambda: [[0] * 28 for _ in range(28)], "no_digit"),
    Case("one_pixel", lambda: [[255 if (r, c) == (14, 14) else 0 for c in range(28)] for r in range(28)], "no_digit"),
    Case("valid_ints", _valid_json_digit, "ok"),
    Case("valid_floats", lambda: [[float(v) + 0.5 * (v == 0) for v in row] for row in _valid_json_digit()], "ok"),
)
