"""What a PNG or JPEG file's bytes say before any decoder reads them: its format, its declared size, its chunks
and markers.

Read with ``struct`` and one regex, never with Pillow: these checks decide what Pillow is allowed to see
(``imaging.decode_luma``) and which small PNGs may decode on the event loop (``decoder``).
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
# ISO base media files (a phone's HEIC photo, AVIF) name their brand after "ftyp" at byte 4.
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"heim": "HEIC", b"heis": "HEIC", b"hevc": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}  # fmt: skip
# A picture pasted as text: a data: URL, or the base64 of PNG's or JPEG's first bytes.
_AS_TEXT = (b"data:", b"iVBORw0KGgo", b"/9j/")
_UTF8_BOM = b"\xef\xbb\xbf"

# What Pillow walks in Python, or inflates, before any pixel: every chunk or marker (a few µs each), each
# colour profile and compressed text (up to 1 MiB each), each JPEG scan (a pass over the whole picture: a
# 4096x976 progressive JPEG's last 14-byte scan repeated 1,000 times took 3.4 s). Real files sit far inside
# these bounds: a 4 MiB PNG in libpng's 8 KiB IDAT chunks has about 520 chunks, a phone photo 15-30 JPEG
# markers, a progressive one about 10 scans.
MAX_PNG_CHUNKS = 1024
MAX_PNG_COMPRESSED_METADATA = 8  # zTXt, iTXt and iCCP chunks (the PNG specification allows one iCCP)
MAX_JPEG_MARKERS = 256  # fill and stray bytes between segments count one each: Pillow steps over them one at a time
MAX_JPEG_SCANS = 64
# Pillow parses an EXIF block value by value in Python, and joins a JPEG's Exif segments into one block: a 3.9 MB
# one took 1.7 s. One block of at most what one JPEG segment holds (64 KiB: a phone's EXIF with its thumbnail) parses
# in about 30 ms at worst.
MAX_EXIF_BYTES = 65_535
_EXIF_HEADER = b"Exif\x00\x00"
_COMPRESSED_METADATA = frozenset({b"zTXt", b"iTXt", b"iCCP"})
_JPEG_SOS, _JPEG_EOI, _JPEG_APP1, _JPEG_STRAY = 0xDA, 0xD9, 0xE1, 0x00
_JPEG_RESTARTS = range(0xD0, 0xD8)
_JPEG_NO_LENGTH = frozenset({0x01, *_JPEG_RESTARTS, 0xD8})  # TEM, RSTn, SOI: markers without a segment
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
    head = data[:64].removeprefix(_UTF8_BOM).lstrip()
    if head.startswith(_AS_TEXT):
        raise UnsupportedImageFormat("an image as base64 text (a data: URL?): send the decoded PNG or JPEG bytes")
    name = next((label for magic, label in _KNOWN_OTHERS if data.startswith(magic)), None)
    if name is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        name = "WebP"
    if name is None and data[4:8] == b"ftyp":
        name = _FTYP_BRANDS.get(data[8:12])
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
    return [kind for kind, _, _ in _png_chunk_spans(data, most)]


def png_exif(data: bytes) -> bytes | None:
    """The body of a PNG's eXIf chunk, wherever it lies (before or after the pixels), or None; None too for one that
    claims more bytes than the file holds (a cut block's orientation is not trusted)."""
    for kind, start, length in _png_chunk_spans(data, MAX_PNG_CHUNKS):
        if kind == b"eXIf":
            return data[start : start + length] if start + length <= len(data) else None
    return None


def _png_chunk_spans(data: bytes, most: int) -> list[tuple[bytes, int, int]]:
    """(type, where its data starts, its declared length) of each chunk, as ``png_chunks`` walks them."""
    if not data.startswith(PNG_MAGIC):
        return []
    chunks: list[tuple[bytes, int, int]] = []
    pos = len(PNG_MAGIC)
    while pos + 8 <= len(data) and len(chunks) <= most:
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks.append((kind, pos + 8, length))
        if kind == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    return chunks


def jpeg_markers(data: bytes, most: int) -> list[int]:
    """The marker codes of JPEG ``data`` from its start to the primary picture's end (EOI), read from the segment
    lengths, entropy-coded data skipped by a search; empty when ``data`` does not start like a JPEG. Each fill
    byte before a marker counts as one (0xFF), and so does each stray byte between segments (0x00), which
    libjpeg steps over with a warning. It stops after ``most + 1``, like ``png_chunks``."""
    return [code for code, _ in _jpeg_segments(data, most)]


def _jpeg_segments(data: bytes, most: int) -> list[tuple[int, int]]:
    """``jpeg_markers`` with where each segment's length field starts."""
    if not data.startswith(JPEG_MAGIC):
        return []
    segments: list[tuple[int, int]] = []
    pos = 2
    while len(segments) <= most and pos < len(data):
        fill = _JPEG_FILL.match(data, pos)
        if fill is None:  # stray bytes: read past up to the next 0xFF, as libjpeg does
            following = data.find(b"\xff", pos)
            following = len(data) if following < 0 else following
            segments += [(_JPEG_STRAY, pos)] * min(following - pos, most + 1 - len(segments))
            pos = following
            continue
        if fill.end() >= len(data):
            break
        segments += [(0xFF, pos)] * min(fill.end() - pos - 1, most + 1 - len(segments))
        marker, pos = data[fill.end()], fill.end() + 1
        segments.append((marker, pos))
        if marker == _JPEG_EOI:
            break
        if marker not in _JPEG_NO_LENGTH:
            pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == _JPEG_SOS or marker in _JPEG_RESTARTS:  # entropy-coded data follows, to the next marker
            end = _JPEG_AFTER_SCAN.search(data, pos)
            pos = len(data) if end is None else end.start()
    return segments


def check_structure(data: bytes, fmt: str) -> None:
    """Refuse a file whose chunks or markers alone would cost Pillow seconds (``MAX_PNG_CHUNKS`` and the rest)."""
    if fmt == "PNG":
        chunks = _png_chunk_spans(data, MAX_PNG_CHUNKS)
        if len(chunks) > MAX_PNG_CHUNKS:
            raise InvalidImage(f"the PNG holds more than {MAX_PNG_CHUNKS} chunks")
        if sum(kind in _COMPRESSED_METADATA for kind, _, _ in chunks) > MAX_PNG_COMPRESSED_METADATA:
            raise InvalidImage(
                f"the PNG holds more than {MAX_PNG_COMPRESSED_METADATA} compressed text or profile chunks"
            )
        exif = [length for kind, _, length in chunks if kind == b"eXIf"]
        if len(exif) > 1 or sum(exif) > MAX_EXIF_BYTES:
            raise InvalidImage(f"the PNG's EXIF must be one block of at most {MAX_EXIF_BYTES} bytes")
        return
    segments = _jpeg_segments(data, MAX_JPEG_MARKERS)
    if len(segments) > MAX_JPEG_MARKERS:
        raise InvalidImage(f"the JPEG holds more than {MAX_JPEG_MARKERS} markers or stray bytes")
    codes = [code for code, _ in segments]
    if codes.count(_JPEG_SOS) > MAX_JPEG_SCANS:
        raise InvalidImage(f"the JPEG holds more than {MAX_JPEG_SCANS} scans")
    exif = [at for code, at in segments if code == _JPEG_APP1 and data.startswith(_EXIF_HEADER, at + 2)]
    if len(exif) > 1:  # one segment holds at most MAX_EXIF_BYTES; Pillow would join several into one block
        raise InvalidImage("the JPEG holds more than one EXIF segment")
