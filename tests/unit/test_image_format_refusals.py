"""A picture in a format the service does not take is refused with the format's name when it is a known one,
so the client knows what to convert from; anything else is "unrecognised"."""

from __future__ import annotations

import pytest

from service.errors import UnsupportedImageFormat
from service.inputs.file_structure import sniff_format

UNRECOGNISED = "unrecognised image bytes: only PNG and JPEG are accepted"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00", "WebP"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"/>', "SVG/XML"),
        (b' \n\t<?xml version="1.0"?><svg/>', "SVG/XML"),
        (b'<?xml version="1.0"?><note>not a picture</note>', "SVG/XML"),
        (b"<!-- " + b"drawn by hand " * 60 + b"--><SVG width='28'/>", "SVG/XML"),
        (b"GIF89a\x1c\x00\x1c\x00", "GIF"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),  # an iPhone's photo
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "AVIF"),
        (b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?><svg/>', "SVG/XML"),  # saved with a byte-order mark
    ],
    ids=["webp", "svg", "xml-declared-svg", "xml", "svg-after-a-long-comment", "gif", "heic", "avif", "svg-with-bom"],
)
def test_a_known_format_is_named(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedImageFormat) as info:
        sniff_format(data)
    assert info.value.message == f"{name} is not accepted: send PNG or JPEG"


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00",  # a RIFF file that is not WebP (sound)
        b"ABCD\x24\x00\x00\x00WEBPVP8 ",  # WEBP at the right place without RIFF
        b"<html><body>a digit</body></html>",
        b"a digit drawn as <svg> text",  # SVG mentioned, but the bytes are not markup
        b"\x00\x01\x02\x03",
    ],
    ids=["riff-wave", "webp-without-riff", "html", "svg-in-text", "binary"],
)
def test_anything_else_is_unrecognised(data: bytes) -> None:
    with pytest.raises(UnsupportedImageFormat) as info:
        sniff_format(data)
    assert info.value.message == UNRECOGNISED


@pytest.mark.parametrize(
    "data",
    [
        b"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA",  # canvas.toDataURL() as sent
        b"iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA",  # a PNG's base64 alone
        b"/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJ",  # a JPEG's
        b"\n  data:image/jpeg;base64,/9j/4AAQ",
    ],
    ids=["data-url", "png-base64", "jpeg-base64", "data-url-after-whitespace"],
)
def test_a_picture_sent_as_base64_text_is_told_to_send_the_bytes(data: bytes) -> None:
    with pytest.raises(UnsupportedImageFormat, match=r"base64 text .* send the decoded PNG or JPEG bytes"):
        sniff_format(data)
