"""decode_luma and make_ink_bright: format sniffing, size limits, every Pillow mode, EXIF orientation, polarity."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

import numpy as np
import pytest
from PIL import Image, ImageOps

from service.errors import ImageTooLarge, InvalidImage, MultiFrameImage, UnsupportedImageFormat
from service.inputs.file_structure import (
    MAX_EXIF_BYTES,
    MAX_JPEG_MARKERS,
    MAX_JPEG_SCANS,
    MAX_PNG_CHUNKS,
    MAX_PNG_COMPRESSED_METADATA,
    jpeg_markers,
    png_chunks,
    png_size,
    sniff_format,
)
from service.inputs.imaging import JPEG_DRAFT_SIDE, decode_luma, make_ink_bright, to_grey
from tests.unit.input_corpus import (
    MAX_PIXELS,
    MAX_SIDE,
    apng,
    decoded_grey,
    draw_one_rgba,
    encode,
    exif_rotated_jpeg,
    png_chunk,
    png_claiming,
    read_luma,
    seven_small,
)


def decode(data: bytes) -> np.ndarray:
    return make_ink_bright(decode_luma(data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS))


def test_sniff_accepts_only_png_and_jpeg_magic() -> None:
    assert sniff_format(b"\x89PNG\r\n\x1a\n rest") == "PNG"
    assert sniff_format(b"\xff\xd8\xff\xe0 rest") == "JPEG"
    for data in (b"GIF89a...", b"BM....", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"%PDF-1.4", b"", b"\x89PNX"):
        with pytest.raises(UnsupportedImageFormat):
            sniff_format(data)


def test_declared_type_does_not_matter_only_bytes() -> None:
    # A GIF renamed .png is still a GIF.
    with pytest.raises(UnsupportedImageFormat, match="GIF"):
        decode(encode(seven_small(), "GIF"))


def test_size_checked_from_header_before_decoding() -> None:
    # The header lies (one row of data for 4000 rows): refusal must come from the header alone.
    with pytest.raises(ImageTooLarge, match="4096 px a side"):
        decode_luma(png_claiming(5000, 100), max_side=4096, max_pixels=10**8)
    with pytest.raises(ImageTooLarge, match="px; the limit is 1000 px"):
        decode_luma(png_claiming(100, 100), max_side=4096, max_pixels=1000)
    # Past Pillow's own bomb limit too, the side is named: it said only "exceed the decompression limit".
    with pytest.raises(ImageTooLarge, match=r"image is 1x2147483647 px; the limit is 4096 px a side"):
        decode_luma(png_claiming(1, 2**31 - 1), max_side=4096, max_pixels=10**8)


def test_a_twelve_megapixel_phone_photo_is_limited_by_the_size_it_decodes_at() -> None:
    # 4000x3000, three times the default pixel limit: a JPEG that large decodes at 1/8 scale, and that is what counts.
    photo = encode(seven_small("RGB").resize((4000, 3000)), "JPEG", quality=85)
    assert decode_luma(photo, max_side=MAX_SIDE, max_pixels=MAX_PIXELS).shape == (375, 500)
    with pytest.raises(ImageTooLarge, match="500x375 = 187500 px at its smallest decoding scale"):
        decode_luma(photo, max_side=MAX_SIDE, max_pixels=100_000)
    with pytest.raises(ImageTooLarge, match="4000x3000 = 12000000 px; the limit"):  # a PNG decodes whole
        decode_luma(png_claiming(4000, 3000), max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
    small = encode(seven_small("RGB").resize((150, 100)), "JPEG", quality=85)  # under the draft side: whole
    with pytest.raises(ImageTooLarge, match=r"150x100 = 15000 px; the limit is 10000 px$"):
        decode_luma(small, max_side=MAX_SIDE, max_pixels=10_000)


def test_a_progressive_jpeg_is_limited_by_its_full_size() -> None:
    # Its decoder keeps every coefficient of the whole picture and passes over them once a scan, whatever the scale.
    picture = seven_small("RGB").resize((1200, 1000))
    baseline, progressive = encode(picture, "JPEG", quality=85), encode(picture, "JPEG", quality=85, progressive=True)
    assert decode_luma(baseline, max_side=MAX_SIDE, max_pixels=1_000_000).shape == (250, 300)  # at 1/4
    with pytest.raises(ImageTooLarge, match="1200x1000 = 1200000 px; the limit is 1000000 px"):
        decode_luma(progressive, max_side=MAX_SIDE, max_pixels=1_000_000)
    assert decode_luma(progressive, max_side=MAX_SIDE, max_pixels=MAX_PIXELS).shape == (250, 300)


def test_pillow_bomb_limit_is_a_domain_error() -> None:
    with pytest.raises(ImageTooLarge):
        decode_luma(png_claiming(12_000, 12_000), max_side=20_000, max_pixels=400_000_000)


def test_multi_frame_refused() -> None:
    with pytest.raises(MultiFrameImage):
        decode(apng())


def test_a_jpeg_carrying_further_images_is_read_as_its_primary_picture() -> None:
    """Cameras and phones write previews and depth maps after the photo (an MPO); that is one picture, not an
    animation, and it reads as the same JPEG without them, at the same reduced scale for a large one."""
    for size in ((140, 140), (2 * JPEG_DRAFT_SIDE + 40, 2 * JPEG_DRAFT_SIDE)):
        photo = seven_small("RGB").resize(size)
        preview = Image.new("RGB", (size[0] // 4, size[1] // 4), (255, 0, 0))
        with_preview = encode(photo, "MPO", save_all=True, append_images=[preview], quality=95)
        np.testing.assert_array_equal(decode(with_preview), decode(encode(photo, "JPEG", quality=95)))


def test_truncated_png_refused_not_padded() -> None:
    data = encode(seven_small(), "PNG")
    with pytest.raises(InvalidImage):
        decode(data[: len(data) - 40])


# Every mode Pillow decodes a PNG or a JPEG to (the test checks that the file opens in it).
DECODED_MODES = [("PNG", mode) for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")] + [
    ("JPEG", mode) for mode in ("L", "RGB", "CMYK")
]


@pytest.mark.parametrize(("fmt", "mode"), DECODED_MODES)
def test_every_mode_a_png_or_jpeg_decodes_to_gives_the_same_grey(fmt: str, mode: str) -> None:
    reference = np.asarray(seven_small("L"), dtype=np.float64)
    if mode == "I;16":
        img = Image.fromarray((reference * 257).astype(np.uint16))
    elif mode == "1":
        img = seven_small("L").convert("1", dither=Image.Dither.NONE)
        reference = np.where(reference >= 128, 255.0, 0.0)
    else:
        img = seven_small(mode)
    data = encode(img, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(BytesIO(data)) as opened:
        assert opened.mode == mode
    grey = read_luma(data).astype(np.float64)
    assert grey.shape == reference.shape
    assert np.abs(grey - reference).mean() < 3.0, mode


@pytest.mark.parametrize(
    ("dtype", "shape"), [(np.float32, (4, 4)), (np.uint8, (4, 4, 1)), (np.uint8, (4, 4, 5)), (np.uint8, (2, 4, 4, 3))]
)
def test_pixels_no_png_or_jpeg_decodes_to_are_refused_by_their_layout(dtype: type, shape: tuple[int, ...]) -> None:
    # The decoders give grey [H, W] or 2-4 bands (grey and alpha, RGB, RGBA); anything else is no picture of ours.
    with pytest.raises(InvalidImage) as info:
        to_grey(np.zeros(shape, dtype=dtype))
    assert info.value.message == f"unsupported pixel layout {np.dtype(dtype)} {shape}"


@pytest.mark.parametrize("ink", [(0, 0, 0), (255, 255, 255), (200, 30, 30)])
def test_a_drawing_on_a_transparent_layer_is_its_painted_pixels_in_any_colour(ink: tuple[int, int, int]) -> None:
    layer = np.asarray(draw_one_rgba())
    coloured = layer.copy()
    coloured[..., :3] = ink
    grey = decoded_grey(Image.fromarray(coloured))
    assert grey[0, 0] == 0 and grey.max() == 255  # bright ink on a black background, as MNIST
    assert np.array_equal(grey, layer[..., 3])


def test_an_opaque_picture_with_an_alpha_channel_is_composited_onto_white() -> None:
    img = seven_small("L").convert("RGBA")
    rgba = np.asarray(img).copy()
    rgba[..., 3] = 255
    rgba[:5, :5, 3] = 0  # one transparent corner: the border is still mostly opaque paper
    rgba[12:16, 12:16] = (100, 100, 100, 64)  # a quarter-opaque grey patch: 100 x 64/255 + 255 x 191/255
    grey = decoded_grey(Image.fromarray(rgba))
    luma = np.asarray(img.convert("L"))
    assert grey[0, 0] == 255 and np.array_equal(grey[16:], luma[16:])
    assert (grey[12:16, 12:16] == 216).all()


def test_light_ink_on_transparent_layer_is_not_lost() -> None:
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    img.paste((255, 255, 255, 255), (40, 20, 60, 80))
    out = decode(encode(img, "PNG"))
    assert out[50, 50] > 200 and out[0, 0] < 50


def test_palette_transparency_composited() -> None:
    img = seven_small().convert("P")
    out = decode(encode(img, "PNG", transparency=255))
    assert out[0, 0] == 0 and out.max() >= 200


def test_sixteen_bit_scaled_not_clipped() -> None:
    arr = np.full((50, 50), 60000, dtype=np.uint16)
    arr[10:40, 20:25] = 1000
    grey = decoded_grey(Image.fromarray(arr))
    assert grey[0, 0] == round(60000 / 257) and grey[20, 22] == round(1000 / 257)


def test_exif_orientation_applied() -> None:
    data, upright = exif_rotated_jpeg()
    out = decode(data).astype(np.float64)
    expected = 255.0 - np.asarray(upright, dtype=np.float64)
    assert out.shape == expected.shape
    assert np.corrcoef(out.ravel(), expected.ravel())[0, 1] > 0.95


def test_large_jpeg_decoded_at_reduced_scale() -> None:
    img = Image.new("L", (4000, 1000), 255)
    out = decode(encode(img, "JPEG", quality=50))
    assert JPEG_DRAFT_SIDE <= max(out.shape) < 4000


@pytest.mark.parametrize(
    ("paper", "ink", "inverted"),
    [(255, 0, True), (0, 255, False), (120, 20, True), (110, 200, False), (200, 150, True)],
)
def test_polarity_by_which_tail_is_ink(paper: int, ink: int, inverted: bool) -> None:
    grey = np.full((60, 60), paper, dtype=np.uint8)
    grey[15:45, 28:33] = ink
    out = make_ink_bright(grey)
    assert (out[30, 30] > out[0, 0]) and (out[0, 0] == (255 - paper if inverted else paper))


def test_blank_white_becomes_black_and_tiny_images_pass() -> None:
    assert make_ink_bright(np.full((5, 5), 255, dtype=np.uint8)).max() == 0
    assert decode(encode(Image.new("L", (1, 1), 255), "PNG")).shape == (1, 1)


@pytest.mark.parametrize(
    ("ink", "paper", "shade", "pen"),
    [(140, 210, 100, 6), (60, 200, 40, 6), (140, 210, 100, 10), (230, 40, 120, 6), (160, 60, 110, 6)],
)
def test_a_shadow_over_most_of_the_border_does_not_flip_the_ink(ink: int, paper: int, shade: int, pen: int) -> None:
    # A phone photo: the shadow is wide, darker than the pencil, and covers two thirds of the edge;
    # the border's median is the shadow, and the paper's bright tail lies further from it than the ink.
    # (The last two: chalk on a blackboard, a lit patch over most of the edge.)
    grey = np.full((300, 400), paper, dtype=np.uint8)
    grey[:, :260] = shade
    grey[80:220, 290 : 290 + pen] = ink
    grey[80 : 80 + pen, 270:320] = ink
    # Dark ink is inverted (the shadow then reads brighter than the paper; removing it is normalise's job).
    expected = 255 - grey if ink < paper else grey
    np.testing.assert_array_equal(make_ink_bright(grey), expected)


@pytest.mark.parametrize("chalk", [False, True])
def test_faint_pencil_beside_a_shadow_is_compared_with_the_paper_around_it(chalk: bool) -> None:
    # A photo: a shadow over two thirds of the page, sensor noise as strong as the faint pencil's thin strokes
    # (neither top-hat stands out), the pencil on the lit paper. The border's median is the shadow, and the lit
    # paper's tail lies further from it than the pencil's: only the paper around the stroke tells which is ink.
    rng = np.random.default_rng(0)
    grey = np.full((300, 400), 190.0)
    grey[:, :260] = 100
    grey[100:190, 320:324] -= 20
    grey = np.clip(np.rint(grey + rng.normal(0, 4, grey.shape)), 0, 255).astype(np.uint8)
    if chalk:  # the same scene as light chalk on a dark board with a lit patch: left as it is
        grey = 255 - grey
    np.testing.assert_array_equal(make_ink_bright(grey), grey if chalk else 255 - grey)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("board", [False, True])
def test_a_blank_page_with_a_shadow_is_left_to_the_border(seed: int, board: bool) -> None:
    # Noise alone has two alike tails around the paper: it decides nothing, and the border does, as on plain
    # paper: a light page is inverted (it then reads as blank), a dark board is left as it is.
    rng = np.random.default_rng(seed)
    grey = np.full((300, 400), 200.0)
    grey[:, :140] = 140
    grey = np.clip(np.rint(grey + rng.normal(0, 4, grey.shape)), 0, 255).astype(np.uint8)
    if board:
        grey = 255 - grey
    np.testing.assert_array_equal(make_ink_bright(grey), grey if board else 255 - grey)


def _bold_zero(side: int, ring: int) -> np.ndarray:
    """A bold 0 cropped tight to its ink, dark on white: its ink covers about half the picture."""
    yy, xx = np.mgrid[:side, :side]
    r = np.hypot(yy - side / 2, xx - side / 2)
    return np.where((r < side / 2 - 8) & (r > side / 2 - 8 - ring), 20, 235).astype(np.uint8)


def test_a_bold_digit_cropped_to_its_ink_keeps_its_polarity() -> None:
    # Its ink covers more of the picture than the border's paper (the sheet-on-a-desk rule's share), but a digit
    # keeps its counter: only a filled region is a sheet (a review found tight crops and fat brushes inverted).
    zero = _bold_zero(120, 30)
    assert (zero < 128).mean() > 0.4
    np.testing.assert_array_equal(make_ink_bright(zero), 255 - zero)


@pytest.mark.parametrize("share", [0.35, 0.6])
@pytest.mark.parametrize(("desk", "sheet", "stroke"), [(70, 220, 30), (230, 50, 240)], ids=["pen", "chalk"])
def test_a_sheet_filling_the_picture_inside_a_desk_is_the_paper(
    share: float, desk: int, sheet: int, stroke: int
) -> None:
    # A sheet (light paper with a pen stroke, or a slate with chalk) on a desk that is all the border shows: past
    # the share the sheet is the paper and the stroke the ink, short of it the border decides.
    side, inner = 200, round(200 * share**0.5)
    grey = np.full((side, side), desk, np.uint8)
    top = (side - inner) // 2
    grey[top : top + inner, top : top + inner] = sheet
    grey[side // 2 - 20 : side // 2 + 20, side // 2 - 2 : side // 2 + 2] = stroke
    ink_bright = make_ink_bright(grey)[side // 2, side // 2] > make_ink_bright(grey)[side // 2, side // 2 - 10]
    assert ink_bright == (share > 0.4)  # the stroke brighter than its sheet: read as the ink


def test_a_thick_brush_on_a_plain_canvas_keeps_its_ink_bright() -> None:
    # A canvas drawing: strokes wider than the gaps between them, the gaps as thin as pen strokes.
    grey = np.full((280, 280), 255, dtype=np.uint8)
    for left in range(60, 220, 28):
        grey[40:240, left : left + 24] = 0
    out = make_ink_bright(grey)
    assert out[100, 70] == 255 and out[0, 0] == 0


def test_a_thick_stroke_on_a_lighting_gradient_is_found_dark() -> None:
    # Uneven paper, but no thin structure either way: the top-hats decide nothing, the paper around the stroke does.
    grey = np.tile(np.linspace(120, 220, 400), (300, 1)).astype(np.uint8)
    grey[60:240, 180:220] = 30
    np.testing.assert_array_equal(make_ink_bright(grey), 255 - grey)


def test_png_size_reads_the_header_alone() -> None:
    """What decides whether a PNG is small enough to decode on the event loop: the header's width and height,
    in that order, and nothing for bytes that do not start like a PNG with its header chunk."""
    picture = Image.new("L", (300, 40))
    data = encode(picture, "PNG")
    assert png_size(data) == (300, 40)
    assert png_size(data[:24]) == (300, 40)  # the header chunk's fields are all it reads
    assert png_size(data[:23]) is None
    assert png_size(encode(picture, "JPEG")) is None
    assert png_size(data[:12] + b"IDAT" + data[16:]) is None  # a first chunk that is not the header
    assert png_size(b"GIF89a" + data[6:]) is None


def test_png_chunks_lists_the_chunk_types_to_the_end_chunk() -> None:
    """What bounds the work of a PNG decoded on the event loop: its chunks, counted from their length fields."""
    data = encode(Image.new("L", (30, 20)), "PNG")
    text = png_chunk(b"tEXt", b"Comment\x00" + b"x" * 300)
    with_text = data[:33] + text + data[33:]  # after the 8-byte signature and the 25-byte header chunk
    assert png_chunks(with_text, 8) == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert png_chunks(with_text + text, 8) == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]  # nothing past the end
    assert png_chunks(data[:33] + text * 10 + data[33:], 3) == [b"IHDR", b"tEXt", b"tEXt", b"tEXt"]  # most + 1
    assert png_chunks(with_text[: 33 + len(text) + 8], 8) == [b"IHDR", b"tEXt", b"IDAT"]  # a cut last chunk counts
    assert png_chunks(with_text[: 33 + len(text) + 7], 8) == [b"IHDR", b"tEXt"]
    assert png_chunks(encode(Image.new("L", (30, 20)), "JPEG"), 8) == []


SOS, EOI = 0xDA, 0xD9


def _jpeg(**params: object) -> bytes:
    return encode(seven_small("RGB").resize((400, 300)), "JPEG", quality=90, **params)


def test_jpeg_markers_follow_the_segments_to_the_primary_pictures_end() -> None:
    baseline = jpeg_markers(_jpeg(), MAX_JPEG_MARKERS)
    assert baseline[0] == 0xE0 and baseline[-2:] == [SOS, EOI] and baseline.count(SOS) == 1
    progressive = jpeg_markers(_jpeg(progressive=True), MAX_JPEG_MARKERS)
    assert 2 <= progressive.count(SOS) <= MAX_JPEG_SCANS and progressive[-1] == EOI
    restarting = jpeg_markers(_jpeg(restart_marker_blocks=1), MAX_JPEG_MARKERS)
    assert 0xDD in restarting and not any(0xD0 <= m <= 0xD7 for m in restarting)  # RSTn lie inside the scan
    assert jpeg_markers(encode(seven_small(), "PNG"), MAX_JPEG_MARKERS) == []
    # Fill bytes before a marker count one each; a marker without a segment (TEM) is stepped over.
    assert jpeg_markers(b"\xff\xd8\xff\xff\xff\x01\xff\xd9", 10) == [0xFF, 0xFF, 0x01, EOI]


def _with_scans(total: int) -> bytes:
    """A progressive JPEG whose last scan is repeated until it has ``total`` scans: legal, and each is a pass."""
    data = _jpeg(progressive=True)
    last = data[data.rfind(b"\xff\xda") : -2]
    return data[:-2] + last * (total - jpeg_markers(data, MAX_JPEG_MARKERS).count(SOS)) + b"\xff\xd9"


def _png_with(chunk: bytes, count: int) -> bytes:
    plain = encode(seven_small(), "PNG")  # header, pixels, end
    return plain[:33] + chunk * count + plain[33:]


ZTXT = png_chunk(b"zTXt", b"note\x00\x00" + zlib.compress(b"\x00" * 1024))
EMPTY_SCAN = bytes.fromhex("ffda0008010100000000")  # a scan header and no data: still a pass over the picture
COMMENT = b"\xff\xfe\x00\x02"  # an empty comment segment: what follows it is read as segments, not scan data


def _exif_segment(size: int) -> bytes:
    payload = b"Exif\x00\x00II*\x00" + b"\x00" * (size - 10)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


STRUCTURE_BOMBS = {
    "a scan too many": (_with_scans(MAX_JPEG_SCANS + 1), f"more than {MAX_JPEG_SCANS} scans"),
    "empty APP1 markers": (_jpeg()[:2] + b"\xff\xe1\x00\x02" * MAX_JPEG_MARKERS + _jpeg()[2:], "markers"),
    "fill bytes": (_jpeg()[:2] + b"\xff" * MAX_JPEG_MARKERS + _jpeg()[2:], f"more than {MAX_JPEG_MARKERS} markers"),
    "a chunk too many": (_png_with(png_chunk(b"abCd", b""), MAX_PNG_CHUNKS - 2), f"more than {MAX_PNG_CHUNKS} chunks"),
    "compressed text": (_png_with(ZTXT, MAX_PNG_COMPRESSED_METADATA + 1), "compressed text or profile chunks"),
    # libjpeg steps over a stray byte between segments and reads on: the walk does too, counting it.
    "a stray byte, then scans": (_jpeg()[:-2] + COMMENT + b"\x00" + EMPTY_SCAN * MAX_JPEG_SCANS + b"\xff\xd9", "scans"),
    "stray bytes": (_jpeg()[:20] + b"\x00" * MAX_JPEG_MARKERS + _jpeg()[20:], "markers or stray bytes"),
    "two EXIF segments": (_jpeg()[:2] + _exif_segment(1000) * 2 + _jpeg()[2:], "more than one EXIF segment"),
    "a large PNG EXIF": (_png_with(png_chunk(b"eXIf", b"II*\x00" + b"\x00" * MAX_EXIF_BYTES), 1), "EXIF"),
    "two PNG EXIF": (_png_with(png_chunk(b"eXIf", b"II*\x00\x08\x00\x00\x00\x00\x00"), 2), "EXIF"),
}


@pytest.mark.parametrize(("bomb", "says"), STRUCTURE_BOMBS.values(), ids=STRUCTURE_BOMBS.keys())
def test_a_file_whose_chunks_or_markers_alone_cost_seconds_is_refused_before_decoding(bomb: bytes, says: str) -> None:
    # 1,000 repeated scans took 3.4 s of CPU in a 30 KB JPEG, a million empty markers or chunks 1-3 s: the decode
    # budget answers in time but cannot stop the thread, so the pool would stay full.
    with pytest.raises(InvalidImage) as info:
        decode(bomb)
    assert says in info.value.message


def _with_fill(extra: int) -> bytes:
    """A JPEG padded with fill bytes after its start until it holds MAX_JPEG_MARKERS + ``extra`` markers."""
    plain = _jpeg()
    return plain[:2] + b"\xff" * (MAX_JPEG_MARKERS + extra - len(jpeg_markers(plain, MAX_JPEG_MARKERS))) + plain[2:]


def test_files_at_the_structure_bounds_decode() -> None:
    assert decode(_with_fill(0)).max() > 200
    with pytest.raises(InvalidImage):
        decode(_with_fill(1))
    assert decode(_with_scans(MAX_JPEG_SCANS)).max() > 200
    assert decode(_png_with(png_chunk(b"abCd", b""), MAX_PNG_CHUNKS - 3)).max() > 200
    assert decode(_png_with(ZTXT, MAX_PNG_COMPRESSED_METADATA)).max() > 200
    assert decode(_jpeg()[:2] + _exif_segment(60_000) + _jpeg()[2:]).max() > 200  # one EXIF segment, near full
    assert decode(_png_with(png_chunk(b"eXIf", b"II*\x00" + b"\x00" * (MAX_EXIF_BYTES - 4)), 1)).max() > 200


def test_an_exif_segment_beside_xmp_and_restart_markers_with_fill_bytes_decode() -> None:
    exif = Image.Exif()
    exif[0x0112] = 1
    assert decode(_jpeg(exif=exif, xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")).max() > 200  # two APP1 segments
    restarting = _jpeg(restart_marker_blocks=1)
    at = restarting.find(b"\xff\xd0")
    padded = restarting[:at] + b"\xff\xff" + restarting[at:]  # fill bytes before a restart marker, inside a scan
    assert len(jpeg_markers(padded, MAX_JPEG_MARKERS)) == len(jpeg_markers(restarting, MAX_JPEG_MARKERS)) + 3
    assert decode(padded).max() > 200


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_the_picture_as_pillow_does(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(seven_small("L").crop((0, 0, 140, 100)), "JPEG", quality=95, exif=exif)  # not square
    with Image.open(BytesIO(data)) as img:
        upright = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(decode(data), make_ink_bright(upright))


@pytest.mark.parametrize("with_exif_block", [True, False])
def test_a_jpeg_orientation_in_xmp_alone_is_applied(with_exif_block: bool) -> None:
    # The orientation in the XMP packet only (some editors write it there), beside an EXIF block without the tag or
    # with no EXIF block at all: Pillow's EXIF reading falls back to it, and so does the service.
    exif = Image.Exif()
    exif[0x010F] = "camera"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    picture = seven_small("L").crop((0, 0, 140, 100))
    data = encode(picture, "JPEG", quality=95, xmp=xmp, **({"exif": exif} if with_exif_block else {}))
    assert read_luma(data).shape == (140, 100)
