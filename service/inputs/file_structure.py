"""What a PNG or JPEG file's bytes say before any decoder reads them: its format, its declared size, its chunks
and markers.

Read with ``struct`` and one regex, never with Pillow: these checks decide what Pillow is allowed to see
(``imaging.decode_grey``) and which small PNGs may decode on the event loop (``decoder``).
"""

from __future__ import annotations

import re
import struct

from service.errors import InvalidImage, UnsupportedImageFormat

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"

# Only for a clearer message: these are refused whatever they are.
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)

# What Pillow walks in Python, or inflates, before any pixel: every chunk or marker (a few µs each), each
# colour profile and compressed text (up to 1 MiB each), each JPEG scan (a pass over the whole picture:
# 14-byte scans repeated 1,000 times took 3.4 s). Real files sit far inside these bounds: a 4 MiB PNG in
# libpng's 8 KiB IDAT chunks has about 520 chunks, a phone photo 15-30 JPEG markers, a progressive one
# about 10 scans.
MAX_PNG_CHUNKS = 1024
MAX_PNG_COMPRESSED_METADATA = 8  # zTXt, iTXt and iCCP chunks (the PNG specification allows one iCCP)
MAX_JPEG_MARKERS = 256  # fill bytes before a marker count as markers: Pillow reads them one at a time too
MAX_JPEG_SCANS = 64
_COMPRESSED_METADATA = frozenset({b"zTXt", b"iTXt", b"iCCP"})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
_JPEG_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: markers without a segment
_JPEG_FILL = re.compile(rb"\xff+")
# Where entropy-coded data ends: a 0xFF that is no stuffing (FF 00) and no restart marker. One literal first byte
# lets the regex engine skip ahead fast: 1.2 ms over a 2 MB photo, against 26 ms for \xff+ first.
_JPEG_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def sniff_format(data: bytes) -> str:
    """The Pillow format name for PNG or JPEG bytes; anything else is refused by its magic bytes."""
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    if not data:
        raise UnsupportedImageFormat("empty image: send PNG or JPEG bytes")
    head = data[:64].lstrip()
    name = next((label for magic, label in _KNOWN_OTHERS if data.startswith(magic)), None)
    if name is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        name = "WebP"
    if name is None and head[:1] == b"<" and (b"<svg" in data[:1024].lower() or head[:5].lower() == b"<?xml"):
        name = "SVG/XML"
    if name:
        raise UnsupportedImageFormat(f"{name} is not accepted: send PNG or JPEG")
    raise UnsupportedImageFormat("unrecognised image bytes: only PNG and JPEG are accepted")


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as a PNG's header chunk declares them, read without decoding; None when ``data`` does
    not start like a PNG. Nothing is checked here: the decoder checks whatever it is told."""
    if len(data) < 24 or not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_chunks(data: bytes, most: int) -> list[bytes]:
    """The chunk types of PNG ``data`` in file order up to IEND, read from their length fields without decoding;
    empty when ``data`` does not start like a PNG. It stops after ``most + 1``: more than ``most`` is all a
    caller bounding the work needs to know, and the walk costs no more than that on hostile files."""
    if not data.startswith(PNG_MAGIC):
        return []
    types: list[bytes] = []
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data) and len(types) <= most:
        length, kind = struct.unpack_from(">I4s", data, pos)
        types.append(kind)
        if kind == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    return types


def jpeg_markers(data: bytes, most: int) -> list[int]:
    """The marker codes of JPEG ``data`` from its start to the primary picture's end (EOI), read from the segment
    lengths, entropy-coded data skipped by a search; empty when ``data`` does not start like a JPEG. Each fill
    byte before a marker counts as one (0xFF). It stops after ``most + 1``, like ``png_chunks``."""
    if not data.startswith(JPEG_MAGIC):
        return []
    markers: list[int] = []
    pos = 2
    while len(markers) <= most:
        fill = _JPEG_FILL.match(data, pos)
        if fill is None or fill.end() >= len(data):
            break  # not at a marker: Pillow says what is wrong with the file
        markers += [0xFF] * min(fill.end() - pos - 1, most + 1 - len(markers))
        marker, pos = data[fill.end()], fill.end() + 1
        markers.append(marker)
        if marker == _JPEG_EOI:
            break
        if marker in _JPEG_NO_LENGTH:
            continue
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == _JPEG_SOS:
            end = _JPEG_AFTER_SCAN.search(data, pos)
            if end is None:
                break
            pos = end.start()
    return markers


def check_structure(data: bytes, fmt: str) -> None:
    """Refuse a file whose chunks or markers alone would cost Pillow seconds (``MAX_PNG_CHUNKS`` and the rest)."""
    if fmt == "PNG":
        chunks = png_chunks(data, MAX_PNG_CHUNKS)
        if len(chunks) > MAX_PNG_CHUNKS:
            raise InvalidImage(f"the PNG holds more than {MAX_PNG_CHUNKS} chunks")
        if sum(kind in _COMPRESSED_METADATA for kind in chunks) > MAX_PNG_COMPRESSED_METADATA:
            raise InvalidImage(
                f"the PNG holds more than {MAX_PNG_COMPRESSED_METADATA} compressed text or profile chunks"
            )
        return
    markers = jpeg_markers(data, MAX_JPEG_MARKERS)
    if len(markers) > MAX_JPEG_MARKERS:
        raise InvalidImage(f"the JPEG holds more than {MAX_JPEG_MARKERS} markers")
    if markers.count(_JPEG_SOS) > MAX_JPEG_SCANS:
        raise InvalidImage(f"the JPEG holds more than {MAX_JPEG_SCANS} scans")
