"""Decode untrusted PNG/JPEG bytes into one grey plane with bright ink on a dark background.

Pure function, no HTTP, no model. Every way the bytes can be wrong ends in a
domain error from ``service.errors``; nothing else escapes. The order matters:
format from magic bytes, structure (chunks, markers, scans: ``file_structure``) and size from the
header, only then pixels.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from io import BytesIO

import cv2
import imagecodecs
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngImageFile

from digits.normalise import WORK_SIDE, border_pixels, grey_percentile, grey_percentiles, shrink
from service.errors import ImageTooLarge, InvalidImage, MultiFrameImage, ServiceError
from service.inputs.file_structure import check_structure, png_exif, png_size, sniff_format

# libpng's warnings (one per odd chunk, every interlaced picture) are about the file, which is answered or refused
# on its own; as log lines they would let one upload write a thousand.
logging.getLogger("imagecodecs").disabled = True

# JPEGs larger than this are decoded at 1/2, 1/4 or 1/8 scale, the smallest that still covers it:
# libjpeg skips the detail in its DCT for free, which bounds time and memory. A 1600 px photo arrives
# at 200 px, within the normaliser's working side, so nothing is resized again (3/4 of that side).
JPEG_DRAFT_SIDE = WORK_SIDE * 3 // 4

# A grey plane with less spread than this has no ink worth deciding polarity on.
_FLAT_RANGE = 8
# Polarity is decided on a copy this small at most: strokes are still there, paper is cheap.
_POLARITY_SIDE = 256
# Paper whose border spans more grey levels than this (10th to 90th percentile) is uneven.
_PLAIN_PAPER = 24
# Wider than a pen stroke on the small copy, narrower than a shadow's corner: the top-hats' square.
# Canvas brushes are wider, but canvases are plain paper, where the border decides.
_STROKE_SIDE = 7
# The ink's strength is its strongest thin structures, short of the few brightest pixels.
_INK_PERCENTILE = 99.5
# One polarity's thin structures must be this many times the other's to decide alone.
_DECISIVE = 1.5
# When they do not, on uneven paper: the paper under each pixel is the median over a square this many times
# narrower than the small copy (on a photo's 200x150 copy, 25 px: wider than a pen stroke; a shadow's edge runs
# through it unblurred), and the ink is the tail of the difference, at this percentile, that stands more than this
# many times further from it; else the border decides. At 1.5, Fashion-MNIST garments refused fell to 90.1 %
# against 90.7 % at 2 (benchmarks/README.md).
_PAPER_SQUARE = 8
_INK_TAIL = 99.9
_DECISIVE_TAIL = 2.0
# More of the picture than this on the ink's side of the border's grey, filling this much of its bounding box, is no
# ink but a sheet photographed on a desk: a digit, however bold or tightly framed, keeps its counters and the gaps
# between its strokes (MNIST's boldest cover 31 % of their frame; a fat 0 cropped to its ink fills about 60 %).
_SHEET_SHARE = 0.4
_SHEET_FILL = 0.85

_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the turn that makes the picture upright, as PIL.ImageOps.exif_transpose turns it.
_EXIF_TURNS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: np.fliplr,
    3: lambda a: a[::-1, ::-1],
    4: np.flipud,
    5: np.transpose,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].T,
    8: np.rot90,
}


def _check_side(width: int, height: int, max_side: int) -> None:
    # A header of no pixels never gets here: Pillow refuses to open a PNG or JPEG claiming one.
    if width > max_side or height > max_side:
        raise ImageTooLarge(f"image is {width}x{height} px; the limit is {max_side} px a side")


def _check_pixels(width: int, height: int, max_pixels: int, drafted: bool) -> None:
    if width * height > max_pixels:
        size = f"{width}x{height} = {width * height} px" + (" at its smallest decoding scale" if drafted else "")
        raise ImageTooLarge(f"image is {size}; the limit is {max_pixels} px")


def decode_luma(data: bytes, *, max_side: int, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 [H, W] luminance as sent (``make_ink_bright`` gives it MNIST's polarity).

    Raises UnsupportedImageFormat, ImageTooLarge, MultiFrameImage or InvalidImage;
    never another exception. Large JPEGs may come back at a reduced scale
    (see ``JPEG_DRAFT_SIDE``), which is all the normaliser needs.
    """
    fmt = sniff_format(data)  # it reads the first KiB at most
    check_structure(data, fmt)
    declared = png_size(data) if fmt == "PNG" else None
    if declared is not None and all(declared):
        # From the header, before Pillow, whose own bomb check answers a 2^31 px wide PNG without naming the side.
        _check_side(*declared, max_side)
    try:
        with warnings.catch_warnings():
            # Hostile files make Pillow warn (corrupt EXIF...); the answer is the error or the pixels, not logs.
            warnings.simplefilter("ignore")
            # Pillow's own bomb guard warns first and errors only at 2x its limit; both mean refuse.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Pillow reads the header and the chunks or segments before the pixels: the size, the frames, a JPEG's EXIF.
            with Image.open(BytesIO(data), formats=[fmt]) as img:
                header_size = img.size
                _check_side(*header_size, max_side)
                # A JPEG's further images (MPO: a camera's previews, a phone's depth map) are no frames: Pillow
                # reads the primary one. An animated PNG has no one picture to read.
                if isinstance(img, PngImageFile) and img.is_animated:  # an APNG of more than one frame
                    raise MultiFrameImage("animated or multi-frame images are not accepted: send one frame")
                # The pixel limit bounds what is decoded: a 12-megapixel phone photo (4000x3000) decodes at 500x375. A
                # progressive JPEG keeps every coefficient of the whole picture and passes over them once a scan: its
                # header's size counts (at 4096x4096, 64 scans took 1.1 s and 97 MiB where 2000x2000 took 0.23 s).
                progressive = bool(img.info.get("progressive"))
                drafted = fmt == "JPEG" and _draft(img) and not progressive
                _check_pixels(*(header_size if progressive else img.size), max_pixels, drafted)
                turn = _exif_turn(img, data)
                grey = to_grey(_png_pixels(data, img.mode) if fmt == "PNG" else _jpeg_pixels(img))
    except ServiceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge("image dimensions exceed the decompression limit") from exc
    except MemoryError as exc:
        raise ImageTooLarge("image too large to decode") from exc
    except Exception as exc:
        # Hostile bytes make the decoders raise almost anything (SyntaxError, struct.error, PngError...): all
        # mean a bad image.
        raise InvalidImage(f"could not decode the {fmt} image: it is truncated or corrupt") from exc
    return grey if turn is None else np.ascontiguousarray(turn(grey))


def _png_pixels(data: bytes, mode: str) -> np.ndarray:
    """libpng's pixels (through imagecodecs: a 280x280 canvas in about 40 % less time than Pillow's PNG decoder,
    benchmarks/README.md); palettes and their transparency come back expanded to RGB or RGBA.

    ``mode`` is Pillow's for the file. libpng turns a grey or RGB picture's colour key (tRNS) into an alpha band:
    that band is dropped. The key is the paper's own colour, as the picture shows it, so the picture reads right
    on white or on dark paper; as a binary alpha the key would make every faint edge pixel full-strength ink.
    """
    pixels = imagecodecs.png_decode(data)
    if mode not in ("LA", "RGBA", "P") and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        return np.ascontiguousarray(pixels[..., 0]) if pixels.shape[2] == 2 else pixels[..., :3]
    return pixels


def _draft(img: Image.Image) -> bool:
    """Set a large JPEG to decode at 1/2, 1/4 or 1/8 scale (``img.size`` becomes that size); whether it will."""
    if max(img.size) <= JPEG_DRAFT_SIDE:
        return False
    ratio = JPEG_DRAFT_SIDE / max(img.size)
    # Grey straight from the decoder where the JPEG allows (YCbCr: its luma plane).
    return img.draft("L", (math.ceil(img.width * ratio), math.ceil(img.height * ratio))) is not None


def _jpeg_pixels(img: Image.Image) -> np.ndarray:
    img.load()
    # A JPEG decodes to L, RGB or CMYK; Adobe's inverted CMYK is put right by Pillow's decoder.
    return np.asarray(img.convert("RGB") if img.mode == "CMYK" else img)


def _exif_turn(img: Image.Image, data: bytes) -> Callable[[np.ndarray], np.ndarray] | None:
    """The turn the picture's EXIF orientation asks for, as ImageOps.exif_transpose turns it, without its rewrite
    of the EXIF block (Exif.tobytes: 0.9 s for a crafted 60 KB block) that nothing here reads.

    A PNG's eXIf chunk may follow the pixels, where Pillow looks only when it decodes them: the chunk walk finds it
    (a PNG's hex text form of one is not read: its size is not bounded). A JPEG's is Pillow's, which falls back to
    an XMP orientation when the EXIF block has none. A corrupt EXIF block must not refuse good pixels.
    """
    try:
        if isinstance(img, PngImageFile):
            block = png_exif(data)
            if not block:
                return None
            exif = Image.Exif()
            exif.load(block)
        elif "exif" in img.info or "xmp" in img.info:
            exif = img.getexif()
        else:
            return None
        return _EXIF_TURNS.get(exif.get(_EXIF_ORIENTATION))
    except Exception:
        return None


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """Decoded pixels -> uint8 [H, W] luminance; transparency composited onto white paper.

    ``pixels`` is what the decoders give: grey [H, W], or [H, W, bands] of grey and alpha, RGB or RGBA, in 8
    or 16 bits. Luminance is ITU-R 601's, as Pillow's and OpenCV's conversions to grey.
    """
    if pixels.dtype == np.uint16:
        pixels = _sixteen_bit_to_uint8(pixels)
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and 2 <= pixels.shape[2] <= 4)):
        raise InvalidImage(f"unsupported pixel layout {pixels.dtype} {pixels.shape}")
    if pixels.ndim == 2:
        return pixels
    bands = pixels.shape[2]
    if bands == 2:
        return _composite(pixels[..., 0], pixels[..., 1])
    luma = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)  # from 3 or 4 bands, the fourth (alpha) ignored
    return luma if bands == 3 else _composite(luma, pixels[..., 3])


def _composite(luma: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    low, high = int(alpha.min()), int(alpha.max())
    if float(np.median(border_pixels(alpha))) < 127.5 and high - low > 63:
        # A drawing on a transparent layer (what canvas apps export): the painted pixels are the ink,
        # whatever their colour; light strokes would vanish on white paper, dark ones on black.
        return np.ascontiguousarray(alpha)
    if low == 255:  # opaque (canvas.toDataURL writes RGBA even for an opaque canvas): nothing to composite
        return np.ascontiguousarray(luma)
    share = alpha / np.float32(255.0)
    # A weighted mean of luma and white paper: 0..255 without a clip.
    return np.rint(luma * share + 255.0 * (1.0 - share)).astype(np.uint8)


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    # Some tools write 8-bit values into a 16-bit file: read as 16-bit, such a picture would be nearly black.
    full_scale = 255.0 if int(values.max()) <= 255 else 65535.0
    # One pass straight to uint8, rounded to the nearest level (v / 257 is never halfway): float copies of a 2000 px
    # RGBA picture took 200 MB more.
    return cv2.convertScaleAbs(values, alpha=255.0 / full_scale)


def make_ink_bright(grey: np.ndarray) -> np.ndarray:
    """Invert when the ink is darker than the paper, so ink is bright as in MNIST.

    On plain paper (a canvas, a scan: the border all one grey) the paper is the border's median
    and the ink the tail, dark or bright, that lies further from it. On uneven paper (a shadow or
    a lighting gradient across the border) that tail can be the shadow; there the ink is what is
    thin: the polarity whose thin structures stand out more, the white top-hat (bright and thin)
    against the black top-hat (dark and thin), on a small copy. When neither stands out (faint pencil),
    each pixel is compared with the paper around it rather than with the border.
    """
    if grey.size == 0:
        return grey
    small = shrink(np.ascontiguousarray(grey), _POLARITY_SIDE)
    high, low, background = grey_percentiles(_border(small), 90, 10, 50)
    if high - low > _PLAIN_PAPER:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (_STROKE_SIDE, _STROKE_SIDE))
        bright = grey_percentile(cv2.morphologyEx(small, cv2.MORPH_TOPHAT, kernel), _INK_PERCENTILE)
        dark = grey_percentile(cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, kernel), _INK_PERCENTILE)
        if max(bright, dark) >= max(_FLAT_RANGE, _DECISIVE * min(bright, dark)):
            return (255 - grey) if dark > bright else grey
        darker = _ink_is_darker_than_its_paper(small)
        if darker is not None:
            return (255 - grey) if darker else grey
    lo, hi = grey_percentiles(small, 0.1, 99.9)
    # A flat picture has no ink tail to compare; a white page then becomes black, so it reads as blank.
    light = background > 127 if hi - lo < _FLAT_RANGE else (background - lo) > (hi - background)
    if hi - lo >= _FLAT_RANGE and _most_of(small, background, lo if light else hi):
        light = not light  # the border is a desk around the sheet: the sheet, filling the picture, is the paper
    return (255 - grey) if light else grey


def _most_of(small: np.ndarray, background: int, tail: int) -> bool:
    """Whether the pixels nearer ``tail`` than the border's grey are a sheet, not ink: more than _SHEET_SHARE of the
    picture, filling _SHEET_FILL of their bounding box."""
    middle = (background + tail) / 2
    nearer = (small < middle) if tail < background else (small > middle)
    count = np.count_nonzero(nearer)
    if count <= _SHEET_SHARE * small.size:
        return False
    _, _, w, h = cv2.boundingRect(nearer.view(np.uint8))
    return count >= _SHEET_FILL * w * h


def on_plain_paper(grey: np.ndarray) -> bool:
    """Whether ``make_ink_bright`` decides by the border alone: its 10th to 90th percentile within _PLAIN_PAPER."""
    high, low = grey_percentiles(_border(shrink(np.ascontiguousarray(grey), _POLARITY_SIDE)), 90, 10)
    return high - low <= _PLAIN_PAPER


def _border(small: np.ndarray) -> np.ndarray:
    h, w = small.shape
    ring = max(1, min(h, w) // 20)
    return np.concatenate(
        [small[:ring].ravel(), small[-ring:].ravel(), small[:, :ring].ravel(), small[:, -ring:].ravel()]
    )


def _ink_is_darker_than_its_paper(small: np.ndarray) -> bool | None:
    """Polarity on uneven paper whose thin structures decide nothing (faint pencil in a shadow): each pixel
    compared with the paper around it, which a border-wide level cannot give where a shadow crosses the page.
    None when neither tail stands out: a garment wider than the square gets no answer here, the border decides.
    """
    paper = cv2.medianBlur(small, max(3, max(small.shape) // _PAPER_SQUARE) | 1)
    difference = small.astype(np.int16) - paper + 255  # 0..510: grey_percentiles counts whole numbers from 0
    bright_tail, dark_tail = grey_percentiles(difference, _INK_TAIL, 100 - _INK_TAIL)
    bright, dark = bright_tail - 255, 255 - dark_tail
    if max(bright, dark) <= _DECISIVE_TAIL * min(bright, dark):  # a flat picture too: 0 against 0
        return None
    return dark > bright
