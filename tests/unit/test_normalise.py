"""to_mnist / image_to_mnist: pictures as people send them come out shaped like MNIST digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digits.normalise import MNIST_DIGIT_BOX
from digits.softening import INPUT_SOFTENING, soften
from registry.layout import IMAGE_SIDE
from service.errors import NoDigit
from service.inputs import normalise as inputs
from service.inputs.normalise import check_not_blank
from tests.helpers import synthetic_digit
from tests.unit.input_corpus import MAX_PIXELS, MAX_SIDE, draw_one_rgba, draw_seven, encode, paper_photo

CENTRE = 14.0  # where MNIST's centres of mass sit (measured: mean 14.0, spread 13.5..14.5)


def fitted(data: bytes) -> np.ndarray:
    return inputs.image_to_mnist(
        data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS, canvas=IMAGE_SIDE, digit_box=MNIST_DIGIT_BOX
    )


def normalise(data: bytes) -> np.ndarray:
    """What the model is given for a picture: fitted like MNIST, then softened as every input is."""
    return soften(fitted(data)[np.newaxis], INPUT_SOFTENING)[0]


def to_mnist(grey: np.ndarray, canvas: int = IMAGE_SIDE, digit_box: int = MNIST_DIGIT_BOX) -> np.ndarray:
    return inputs.to_mnist(grey, canvas=canvas, digit_box=digit_box)


def centre_of_mass(arr: np.ndarray) -> tuple[float, float]:
    idx = np.arange(arr.shape[0])
    total = arr.sum()
    return float((arr.sum(axis=1) * idx).sum() / total), float((arr.sum(axis=0) * idx).sum() / total)


def box_size(arr: np.ndarray, level: float = 128.0) -> tuple[int, int]:
    # At half strength: the fitted body of the digit, without the faint rim the softening adds (digits.softening).
    rows = np.flatnonzero((arr >= level).any(axis=1))
    cols = np.flatnonzero((arr >= level).any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def assert_mnist_like(arr: np.ndarray) -> None:
    assert arr.shape == (28, 28) and arr.dtype == np.float32
    assert arr.min() >= 0.0 and arr.max() <= 255.0
    assert arr.max() >= 250.0  # ink at full strength
    assert arr[0].max() == 0 and arr[-1].max() == 0 and arr[:, 0].max() == 0 and arr[:, -1].max() == 0
    cy, cx = centre_of_mass(arr)
    assert abs(cy - CENTRE) <= 1.0 and abs(cx - CENTRE) <= 1.0, (cy, cx)
    assert max(box_size(arr)) in (19, 20, 21), box_size(arr)


def test_photo_of_a_seven_on_grey_gradient_jpeg() -> None:
    arr = normalise(encode(draw_seven(), "JPEG", quality=75))
    assert_mnist_like(arr)
    h, w = box_size(arr)
    assert h > w  # a 7 is taller than wide; the aspect ratio survived


def test_transparent_canvas_with_black_ink() -> None:
    arr = normalise(encode(draw_one_rgba(), "PNG"))
    assert_mnist_like(arr)
    assert box_size(arr)[1] < 10  # a '1' stays narrow: no stretching to a square


def test_position_and_scale_do_not_matter() -> None:
    a = normalise(encode(draw_seven(origin=(30, 40), noise=0, gradient=False), "PNG"))
    b = normalise(encode(draw_seven(origin=(350, 300), noise=0, gradient=False), "PNG"))
    c = normalise(encode(draw_seven((300, 400), origin=(20, 20), scale=0.5, noise=0, gradient=False), "PNG"))
    assert np.abs(a - b).mean() < 2.0
    assert np.abs(a - c).mean() < 12.0


def test_gradient_and_noise_are_removed() -> None:
    clean = normalise(encode(draw_seven(noise=0, gradient=False), "PNG"))
    photo = normalise(encode(draw_seven(noise=10, gradient=True), "JPEG", quality=60))
    assert np.abs(clean - photo).mean() < 12.0
    assert np.count_nonzero(photo[clean == 0] > 64) <= 4  # no stray ink where the clean one has none


def test_specks_far_from_the_digit_do_not_move_the_box() -> None:
    clean = normalise(encode(draw_seven(noise=0, gradient=False), "PNG"))
    img = draw_seven(noise=0, gradient=False)
    draw = ImageDraw.Draw(img)
    for x, y in [(20, 20), (580, 780), (30, 700), (560, 40)]:
        draw.ellipse((x, y, x + 4, y + 4), fill=0)
    specked = normalise(encode(img, "PNG"))
    assert np.abs(clean - specked).mean() < 1.0


def _with_mark(img: Image.Image, shape: list[tuple[int, int]]) -> Image.Image:
    """The picture with a dark polygon drawn on it (a shadow's corner, a stray stroke)."""
    marked = img.copy()
    ImageDraw.Draw(marked).polygon(shape, fill=30)
    return marked


CORNER = [(540, 0), (600, 0), (600, 60)]  # a dark wedge in the top right corner of a 600x800 picture
EDGE_MARKS = {
    "corner": CORNER,
    "left": [(0, 600), (40, 600), (40, 640), (0, 640)],
    "top": [(100, 0), (140, 0), (140, 40), (100, 40)],
    "right": [(560, 600), (600, 600), (600, 640), (560, 640)],
    "bottom": [(100, 760), (140, 760), (140, 800), (100, 800)],
}


@pytest.mark.parametrize("edge", list(EDGE_MARKS))
def test_a_mark_at_the_frame_edge_does_not_shrink_a_small_digit(edge: str) -> None:
    # A digit photographed on a page: what touches the frame (a shadow's corner) is scene, not a stroke,
    # and must not stretch the crop (the digit would come out tiny and be refused).
    small = draw_seven(origin=(250, 300), scale=0.3, noise=0, gradient=False)
    clean = normalise(encode(small, "PNG"))
    assert np.abs(normalise(encode(_with_mark(small, EDGE_MARKS[edge]), "PNG")) - clean).mean() < 1.0


def test_a_mark_at_the_frame_edge_larger_than_the_small_digit_is_still_scene() -> None:
    # A shadow's corner can leave more ink than a faint pencil digit: the largest group is then the mark, and
    # the digit, inside the frame and at least half as large, is what stays.
    small = draw_seven(origin=(250, 300), scale=0.3, noise=0, gradient=False)
    mark = [(300, 0), (390, 0), (390, 40), (300, 40)]  # 3,600 px against the seven's ~2,500
    clean = normalise(encode(small, "PNG"))
    assert np.abs(normalise(encode(_with_mark(small, mark), "PNG")) - clean).mean() < 1.0


@pytest.mark.parametrize("tilt", [0, 12])
def test_a_pixel_thin_piece_of_ruled_line_beside_a_small_digit_is_dropped(tilt: int) -> None:
    # Lined paper: what is left of a rule inside the frame, a pixel thin once averaged down (and as the camera
    # tilts it, no longer one row), must not stretch the crop; the digit's strokes are thicker.
    small = draw_seven(origin=(250, 300), scale=0.3, noise=0, gradient=False)
    ruled = small.copy()
    ImageDraw.Draw(ruled).line([(380, 690), (520, 690 + tilt)], fill=30, width=4)
    clean = normalise(encode(small, "PNG"))
    assert np.abs(normalise(encode(ruled, "PNG")) - clean).mean() < 1.0


def test_a_small_digit_cut_by_the_frame_is_kept_and_the_corner_mark_dropped() -> None:
    cut = draw_seven(origin=(-4, 300), scale=0.3, noise=0, gradient=False)
    clean = normalise(encode(cut, "PNG"))
    assert_mnist_like(clean)
    assert np.abs(normalise(encode(_with_mark(cut, CORNER), "PNG")) - clean).mean() < 1.0


def test_a_small_digit_cut_by_the_frame_outweighs_a_smudge_inside_it() -> None:
    # A quarter of the digit's ink inside the frame is a smudge, not the digit: the digit at the edge stays.
    cut = draw_seven(origin=(-4, 300), scale=0.3, noise=0, gradient=False)
    smudged = cut.copy()
    ImageDraw.Draw(smudged).ellipse((8, 318, 32, 350), fill=30)  # in the seven's corner: ~650 px against ~2,400
    assert np.abs(normalise(encode(smudged, "PNG")) - normalise(encode(cut, "PNG"))).mean() < 15.0


def test_strokes_at_the_frame_edge_stay_when_the_digit_fills_the_frame() -> None:
    # A canvas, not a page: a stroke from the edge, far from the big seven, is part of the drawing.
    digit = draw_seven(noise=0, gradient=False)
    bar = [(0, 380), (110, 380), (110, 420), (0, 420)]
    clean = normalise(encode(digit, "PNG"))
    assert np.abs(normalise(encode(_with_mark(digit, bar), "PNG")) - clean).mean() > 5.0


def test_thin_strokes_reach_full_strength() -> None:
    img = Image.new("L", (800, 800), 255)
    ImageDraw.Draw(img).line([(300, 100), (500, 100), (380, 700)], fill=0, width=4)
    arr = normalise(encode(img, "PNG"))
    assert arr.max() == pytest.approx(255.0)


@pytest.mark.parametrize("brush", [14, 20, 26, 34])
def test_a_one_drawn_as_a_single_stroke_is_centred(brush: int) -> None:
    # Scaled to the digit box, a 1 drawn with a canvas brush comes out 1-4 px wide; at 2 px OpenCV's
    # moments read the patch as a list of points and put the digit in the canvas's corner. A hand's
    # stroke is never quite upright: the slant gives the patch's columns their uneven grey.
    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).line([(136, 40), (144, 250)], fill=0, width=brush)
    arr = normalise(encode(img, "PNG"))
    cy, cx = centre_of_mass(arr)
    assert abs(cy - CENTRE) <= 1.0 and abs(cx - CENTRE) <= 1.0, (cy, cx)
    assert box_size(arr)[0] in (19, 20, 21)


@pytest.mark.parametrize("brush", [14, 24])
def test_a_hard_brush_stroke_gets_the_soft_rim_of_a_pen(brush: int) -> None:
    # A canvas brush leaves strokes with a hard edge; MNIST's pen fades out over about a pixel. The guards
    # read the hard edge as far from MNIST and refused twice as many canvases (benchmarks/README.md).
    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).line([(80, 80), (200, 70), (200, 140), (80, 220), (210, 220)], fill=0, width=brush)
    arr = normalise(encode(img, "PNG"))
    assert_mnist_like(arr)
    body, rim = box_size(arr), box_size(arr, level=8.0)
    assert rim == (body[0] + 2, body[1] + 2), (body, rim)


def test_normalising_twice_changes_little() -> None:
    # An MNIST-shaped input is already normalised: the second pass must be (almost) the identity.
    once = normalise(encode(draw_seven(), "JPEG", quality=80))
    twice = to_mnist(np.rint(once).astype(np.uint8))
    assert np.abs(twice - once).mean() < 4.0


def mnist_shaped_digits() -> list[np.ndarray]:
    """Digits in the model's own format (20 px box, centred, black paper): a synthetic '1' and two pictures
    this path has already shaped (what a script saving a dataset digit as a PNG sends)."""
    shaped = [normalise(encode(draw_seven(), "JPEG", quality=80)), normalise(encode(draw_one_rgba(), "PNG"))]
    return [synthetic_digit(1), *(np.rint(arr).astype(np.uint8) for arr in shaped)]


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "inverted"])
def test_a_digit_already_shaped_like_mnist_comes_back_unchanged(mode: str) -> None:
    # The model's format already: sent as a PNG it must get the answer the same digit gets as JSON, so
    # nothing may be cleaned, refitted or moved.
    for digit in mnist_shaped_digits():
        img = Image.fromarray(255 - digit if mode == "inverted" else digit, "L")
        if mode in ("RGB", "RGBA"):
            img = img.convert(mode)
        np.testing.assert_array_equal(fitted(encode(img, "PNG")), digit.astype(np.float32))


def _moved(digit: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros_like(digit)
    out[max(rows, 0) : 28 + min(rows, 0), max(cols, 0) : 28 + min(cols, 0)] = digit[
        max(-rows, 0) : 28 - max(rows, 0), max(-cols, 0) : 28 - max(cols, 0)
    ]
    return out


def _rescaled(digit: np.ndarray, side: int) -> np.ndarray:
    """The digit scaled about the centre by side/28, ink brought back to full strength, on a 28x28 canvas."""
    scaled = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), np.float32)
    out = np.zeros((side + 56, side + 56), np.float32)
    out[28 : 28 + side, 28 : 28 + side] = scaled * (255.0 / scaled.max())
    start = 28 + (side - 28) // 2
    return np.rint(out[start : start + 28, start : start + 28]).astype(np.uint8)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _moved(d, 3, 0),  # lower than the centre
        lambda d: _moved(d, 0, -3),  # left of it
        lambda d: np.pad(d, ((0, 12), (0, 12))),  # an MNIST digit in the corner of a larger picture
        lambda d: _rescaled(d, 34),  # larger than the digit box
        lambda d: _rescaled(d, 20),  # smaller than it
        lambda d: np.maximum(d, 60),  # grey paper
        lambda d: (d * 0.6).astype(np.uint8),  # faint ink
    ],
    ids=["low", "left", "larger-picture", "large", "small", "grey-paper", "faint"],
)
def test_a_28x28_picture_not_shaped_like_mnist_is_still_fitted(change: object) -> None:
    digit = mnist_shaped_digits()[1]  # a seven
    picture = change(digit)  # type: ignore[operator]
    arr = normalise(encode(Image.fromarray(picture, "L"), "PNG"))
    assert_mnist_like(arr)
    assert arr.shape != picture.shape or not np.array_equal(arr, picture.astype(np.float32))


@pytest.mark.parametrize(
    "grey",
    [
        np.zeros((28, 28), np.uint8),
        np.full((300, 200), 255, np.uint8),
        np.full((1, 1), 90, np.uint8),
        np.zeros((0, 5), np.uint8),
    ],
    ids=["black", "white", "1x1", "empty"],
)
def test_blank_inputs_raise_no_digit(grey: np.ndarray) -> None:
    with pytest.raises(NoDigit):
        to_mnist(grey)


def test_paper_photo_without_ink_is_blank() -> None:
    with pytest.raises(NoDigit):
        normalise(encode(paper_photo(), "JPEG", quality=70))


def test_a_speck_is_not_a_digit() -> None:
    grey = np.zeros((600, 600), np.uint8)
    grey[300:303, 300:303] = 255
    with pytest.raises(NoDigit):
        to_mnist(grey)


def test_check_not_blank() -> None:
    arr = np.zeros((28, 28), np.float32)
    with pytest.raises(NoDigit):
        check_not_blank(arr)
    arr[14, 14] = 255
    with pytest.raises(NoDigit):
        check_not_blank(arr)
    arr[6:22, 14] = 200
    check_not_blank(arr)


def test_custom_canvas_and_box() -> None:
    arr = to_mnist(255 - np.asarray(draw_seven(noise=0, gradient=False)), canvas=40, digit_box=30)
    assert arr.shape == (40, 40) and max(box_size(arr)) in (29, 30, 31)


def test_the_shared_step_raises_its_own_error_and_the_service_answers_no_digit() -> None:
    from digits import normalise as shared

    grey = np.zeros((28, 28), np.uint8)
    with pytest.raises(shared.BlankImage) as blank:
        shared.to_mnist(grey, canvas=IMAGE_SIDE, digit_box=MNIST_DIGIT_BOX)
    assert not isinstance(blank.value, NoDigit)
    with pytest.raises(NoDigit) as answered:
        to_mnist(grey)
    assert answered.value.code == "no_digit" and answered.value.message == str(blank.value)


@pytest.mark.parametrize("function", [inputs.image_to_mnist, inputs.to_mnist])
def test_canvas_and_digit_box_are_the_callers_facts_never_defaults(function: object) -> None:
    import inspect

    params = inspect.signature(function).parameters  # type: ignore[arg-type]
    for name in ("canvas", "digit_box"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is inspect.Parameter.empty


@pytest.mark.parametrize("q", [0.1, 10, 50, 95, 99.5, 100])
def test_grey_percentile_is_numpys_inverted_cdf(q: float) -> None:
    from digits.normalise import grey_percentile

    rng = np.random.default_rng(int(q * 10))
    for values in (
        rng.integers(0, 256, size=999, dtype=np.uint8),
        np.full(7, 42, np.uint8),
        np.array([0, 255], np.uint8),
    ):
        assert grey_percentile(values, q) == int(np.percentile(values, q, method="inverted_cdf"))


@pytest.mark.parametrize(
    ("shape", "limit"), [((1200, 1600), 512), ((280, 280), 256), ((3, 4000), 512), ((90, 60), 512)]
)
def test_shrink_averages_down_to_the_limit(shape: tuple[int, int], limit: int) -> None:
    from digits.normalise import shrink

    grey = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    small = shrink(grey, limit)
    assert max(small.shape) <= max(limit, 1) and min(small.shape) >= 1
    assert small.shape == grey.shape or max(small.shape) > limit // 2
    assert abs(float(small.mean()) - float(grey.mean())) < 2.0  # an average, not a subsample's luck


def test_a_picture_shaped_like_mnist_on_uneven_paper_still_gets_the_polarity_test() -> None:
    """A white card with a thin dark stroke, centred on a dark surround whose edge is uneven: MNIST's shape by its
    bright pixels, but the polarity test reads the stroke as the ink. Only a border of one grey lets a picture skip
    that test (where it could not change anything)."""
    from service.inputs.imaging import decode_luma, make_ink_bright

    rng = np.random.default_rng(3)
    card = np.zeros((28, 28), dtype=np.uint8)
    edge = np.zeros((28, 28), dtype=bool)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    uneven = edge & (rng.random((28, 28)) < 0.3)
    card[uneven] = rng.integers(25, 64, uneven.sum())
    card[4:24, 4:24] = 255
    row, col, length = rng.integers(6, 20), rng.integers(6, 20), rng.integers(4, 14)
    if rng.random() < 0.5:
        card[row : row + 2, col : col + length] = 0
    else:
        card[row : row + length, col : col + 2] = 0
    data = encode(Image.fromarray(card), "PNG")
    luma = decode_luma(data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS)
    assert not np.array_equal(make_ink_bright(luma), luma)  # the test inverts this one
    np.testing.assert_array_equal(fitted(data), to_mnist(make_ink_bright(luma)))


def _on_a_desk(sheet: Image.Image, desk: int, sides: str) -> Image.Image:
    """The picture of a sheet with a darker desk showing: around it (photographed from a little further away) or in
    a strip along one edge (the framing a little off)."""
    frame = np.asarray(sheet).copy()
    h, w = frame.shape
    if sides == "around":
        frame[: h // 10] = frame[-h // 10 :] = desk
        frame[:, : w // 8] = frame[:, -w // 8 :] = desk
    else:
        frame[: h // 16] = desk
    return Image.fromarray(frame)


@pytest.mark.parametrize("sides", ["around", "along the top"])
@pytest.mark.parametrize("desk", [60, 110])
def test_a_sheet_photographed_on_a_darker_desk_is_read_as_the_sheet(sides: str, desk: int) -> None:
    # The review's most ordinary phone photo: the desk around the sheet was taken for the paper (the sheet became a
    # white block), a strip of it along the top for a stroke (cropped with the digit): both refused as not a digit.
    sheet = draw_seven(size=(1200, 1600), origin=(700, 400), scale=1.2, width=24, gradient=False, paper=215)
    alone = normalise(encode(sheet, "JPEG", quality=90))
    on_desk = normalise(encode(_on_a_desk(sheet, desk, sides), "JPEG", quality=90))
    assert_mnist_like(on_desk)
    assert np.abs(on_desk - alone).mean() < 6.0  # the same seven


def test_a_stroke_cut_by_the_frame_beside_a_speck_stays_the_digit() -> None:
    # A 1 along most of the frame's left edge is no desk when all else left is a speck of dust (a review found the
    # desk rule dropping the stroke and fitting the speck).
    grey = np.zeros((200, 200), np.uint8)
    grey[20:180, 0:5] = 255  # thin: a stroke wider than a twelfth of the frame at its edge reads as paper
    grey[100:103, 150:153] = 255
    height, width = box_size(to_mnist(grey))
    assert height >= 19 and width <= 6, (height, width)
