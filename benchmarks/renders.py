"""Digits as people send them: deterministic renders of one 28x28 digit (issue 13).

Three kinds, each from a 28x28 bright-ink uint8 digit and a numpy Generator, so
the same seed always gives the same bytes:

- ``canvas``: a 280x280 PNG drawing app. The digit's skeleton is traced as
  strokes of a round 15-25 px brush (thick, uniform, antialiased), dark on
  white, or on a transparent layer (alpha), or light on a dark-mode canvas.
- ``photo``: a phone photo, at least 1600x1200 JPEG (quality 70-95): pen,
  marker or pencil on grey paper, plain, lined or squared, lit unevenly
  (a gradient, vignetting, sometimes a shadow), the camera slightly rotated,
  the digit small and off-centre, a little out of focus, sensor noise.
- ``png28``: a 28x28 PNG, MNIST-style, as scripts save dataset digits.

The renders imitate what the clients send, not what the normaliser expects:
nothing here reads the service's code. Each render carries a ``variant`` tag
(e.g. ``canvas/dark``) so accuracy can be broken down by the kind of trouble.
"""

from __future__ import annotations

import functools
import io
import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

KINDS = ("canvas", "photo", "png28")
CANVAS_SIDE = 280
SUPERSAMPLE = 3  # canvas strokes drawn at 3x and reduced: antialiased edges like a browser canvas
PHOTO_SIZES = ((1600, 1200), (2000, 1500), (2048, 1536))  # all under the service's 4 Mpx limit
NOISE_PAD = 256  # px of sensor-noise tile beyond the largest frame side (see _noise_tile)


@dataclass(frozen=True)
class Render:
    data: bytes
    variant: str


def render(kind: str, digit: np.ndarray, rng: np.random.Generator) -> Render:
    if kind == "canvas":
        return render_canvas(digit, rng)
    if kind == "photo":
        return render_photo(digit, rng)
    if kind == "png28":
        return render_png28(digit, rng)
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean mask to a one-pixel skeleton (vectorised passes)."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            neighbours = sum(p.astype(np.int16) for p in ring[:-1])
            transitions = sum(((a == 0) & (b == 1)).astype(np.int16) for a, b in itertools.pairwise(ring))
            # The two sub-iterations peel the south-east, then the north-west boundary.
            if step == 0:  # noqa: SIM108 (the two conditions side by side read as in the paper)
                side = ((p2 * p4 * p6) == 0) & ((p4 * p6 * p8) == 0)
            else:
                side = ((p2 * p4 * p8) == 0) & ((p2 * p6 * p8) == 0)
            remove = (c == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                c[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def stroke_points(digit: np.ndarray, upscale: int = 4) -> np.ndarray:
    """The digit's skeleton as a smoothed, dense point path [N, 2] of (x, y) in 28x28 units.

    The skeleton is taken at ``upscale`` times the resolution and each point is
    averaged with its neighbours, so the brush follows
    a smooth line instead of the pixel staircase; neighbouring points stay about a
    quarter of a 28x28 pixel apart, far closer than the brush is wide, so a disc
    at every point paints one continuous round-brush stroke, loops and junctions
    included.
    """
    big = Image.fromarray(digit).resize((28 * upscale, 28 * upscale), Image.Resampling.BILINEAR)
    ys, xs = np.nonzero(thin(np.asarray(big) >= 96))
    if len(xs) == 0:
        return np.full((1, 2), 14.0)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    # Gaussian weights, sigma 2 skeleton px (half a 28x28 pixel): removes the grid's wobble, keeps the shape.
    near = np.exp(-((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2) / (2 * 2.0**2))
    smooth = near @ points / near.sum(axis=1, keepdims=True)
    return (smooth + 0.5) / upscale


def render_canvas(digit: np.ndarray, rng: np.random.Generator) -> Render:
    brush = float(rng.uniform(15, 25))
    # The writer's slant and shear, then a size between half and most of the box.
    t, shear = np.deg2rad(rng.uniform(-8, 8)), rng.uniform(-0.15, 0.15)
    turn = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    path = stroke_points(digit) @ turn.T
    low, high = path.min(axis=0), path.max(axis=0)
    extent = max(float(high[1] - low[1]), 1.0)
    scale = min(rng.uniform(0.5, 0.8) * CANVAS_SIDE / extent, (CANVAS_SIDE - 2.5 * brush) / max(high - low))
    path = (path - (low + high) / 2) * scale
    room = np.maximum(CANVAS_SIDE / 2 - (high - low) * scale / 2 - brush, 0)  # the stroke stays on the canvas
    path += CANVAS_SIDE / 2 + rng.uniform(-1, 1, size=2) * np.minimum(room, 0.12 * CANVAS_SIDE)

    side, r = CANVAS_SIDE * SUPERSAMPLE, brush * SUPERSAMPLE / 2
    cover = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(cover)
    for x, y in path * SUPERSAMPLE:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    alpha = np.asarray(cover.resize((CANVAS_SIDE, CANVAS_SIDE), Image.Resampling.BOX), np.float32) / 255

    style = rng.choice(["light", "transparent", "dark"], p=[0.55, 0.25, 0.20])
    buf = io.BytesIO()
    if style == "transparent":
        # A drawing layer exported as is; a dark-mode app's layer has light strokes.
        light_ink = rng.random() < 0.25
        ink = rng.uniform(225, 255, size=3) if light_ink else rng.uniform(0, 40, size=3)
        rgba = np.empty((CANVAS_SIDE, CANVAS_SIDE, 4), np.uint8)
        rgba[..., :3] = np.rint(ink).astype(np.uint8)
        rgba[..., 3] = np.rint(alpha * 255).astype(np.uint8)
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
        return Render(buf.getvalue(), "canvas/transparent-light-ink" if light_ink else "canvas/transparent")
    if style == "dark":
        paper, ink = rng.uniform(15, 50) + rng.uniform(0, 8, size=3), rng.uniform(200, 255, size=3)
    else:
        coloured = rng.random() < 0.2  # a blue or red pen picked from the palette
        paper = rng.uniform(245, 255, size=3)
        ink = rng.uniform(0, 180, size=3) * (rng.random(3) < 0.5) if coloured else rng.uniform(0, 35, size=3)
    rgb = paper * (1 - alpha[..., None]) + ink * alpha[..., None]
    image = Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")
    if rng.random() < 0.3:
        image = image.convert("RGBA")  # canvas.toDataURL writes RGBA even when the canvas is opaque
    image.save(buf, "PNG")
    return Render(buf.getvalue(), f"canvas/{style}")


def _ink_mask(digit: np.ndarray, height: float, angle: float) -> np.ndarray:
    """The digit's own pen strokes at ``height`` px, rotated, with photo-sharp edges (0..1 float)."""
    rows = np.nonzero(digit.max(axis=1) > 40)[0]
    ink_rows = max(int(rows[-1] - rows[0] + 1), 1) if len(rows) else 20
    side = max(round(28 * height / ink_rows), 28)
    big = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    big = big.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    # Upscaling smears MNIST's antialiased edge over ~side/28 px; a photographed pen line is sharp.
    return np.clip((np.asarray(big, np.float32) / 255 - 0.3) * 3.5, 0, 1)


def _ruling(h: int, w: int, angle: float, spacing: float, width: float, blur: float, offset: float) -> np.ndarray:
    """Coverage (0..1) of parallel rules across the frame, already out of focus like the ink.

    One period of the blurred rule is tabulated at a quarter pixel and looked up
    by each pixel's distance across the rules: a few cheap passes over the frame
    instead of drawing, rotating and blurring a full-size layer.
    """
    steps = np.arange(0, spacing, 0.25)
    dist = np.abs(steps - spacing / 2)
    sharp = np.clip(width / 2 + 0.5 - dist, 0, 1)
    kernel = np.exp(-0.5 * (np.arange(-16, 17) * 0.25 / blur) ** 2)
    profile = np.convolve(np.concatenate([sharp, sharp, sharp]), kernel / kernel.sum(), "same")[
        len(steps) : 2 * len(steps)
    ]
    # The distance across the rules is a row term plus a column term; each is wrapped to one period in
    # quarter pixels first, so the frame-sized work is one integer add, one wrap and one lookup.
    period = len(steps)
    t = np.deg2rad(angle)
    rows = np.rint(4 * (np.arange(h) * np.cos(t) + offset)).astype(np.int32) % period
    cols = np.rint(-4 * np.arange(w) * np.sin(t)).astype(np.int32) % period
    index = rows[:, None] + cols[None, :]
    np.subtract(index, period, out=index, where=index >= period)
    return np.take(profile.astype(np.float32), index)


def _light(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Illumination over the frame: a gradient, vignetting, sometimes a soft-edged shadow.

    Light varies slowly, so it is computed on a grid 16x coarser and enlarged.
    """
    gh, gw = h // 16 + 1, w // 16 + 1
    yn, xn = np.ogrid[0:gh, 0:gw]
    xn, yn = xn / gw - 0.5, yn / gh - 0.5
    gx, gy = rng.uniform(-0.3, 0.3, size=2)
    light = 1 + gx * xn + gy * yn - rng.uniform(0, 0.3) * (xn**2 + yn**2)
    shadow = rng.random() < 0.4
    if shadow:
        # A phone's or hand's shadow: a half-plane with a soft edge across part of the page.
        t = rng.uniform(0, 2 * np.pi)
        edge = (xn * np.cos(t) + yn * np.sin(t) - rng.uniform(-0.3, 0.3)) * max(w, h)
        light = light * (1 - rng.uniform(0.2, 0.45) / (1 + np.exp(-edge / rng.uniform(20, 120))))
    coarse = Image.fromarray(light.astype(np.float32), "F")
    return np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR)), shadow


@functools.cache
def _noise_tile() -> np.ndarray:
    """Unit Gaussian noise a little larger than any frame; each photo takes a window at a random offset.

    Drawing 3 million normals per photo was a fifth of its rendering time; a shifted window of fixed
    noise is as random to the normaliser (nothing correlates across photos) and keeps renders seeded.
    """
    side = max(max(size) for size in PHOTO_SIZES) + NOISE_PAD
    return np.random.default_rng(20261130).standard_normal((side, side), dtype=np.float32)


def render_photo(digit: np.ndarray, rng: np.random.Generator) -> Render:
    w, h = PHOTO_SIZES[int(rng.integers(len(PHOTO_SIZES)))]
    if rng.random() < 0.4:
        w, h = h, w  # portrait
    camera = rng.uniform(-5, 5)  # the paper's rotation in the frame; the writer's slant comes on top
    focus = rng.uniform(0.6, 1.6)  # defocus blur sigma, px
    mask = _ink_mask(digit, rng.uniform(0.12, 0.3) * min(w, h), camera + rng.uniform(-6, 6))
    pad = 8  # room for the blur around the ink
    mask = np.pad(mask, pad)
    mh, mw = mask.shape
    x0 = int(np.clip(w / 2 + rng.uniform(-0.3, 0.3) * w - mw / 2, 0, w - mw))
    y0 = int(np.clip(h / 2 + rng.uniform(-0.3, 0.3) * h - mh / 2, 0, h - mh))

    tool = rng.choice(["pen", "marker", "pencil"], p=[0.5, 0.2, 0.3])
    if tool == "pencil":
        # Graphite: lighter, and grainy along the paper's tooth.
        coarse = rng.normal(0.0, 1.0, size=(mh // 2 + 1, mw // 2 + 1)).astype(np.float32)
        grain = np.asarray(Image.fromarray(coarse, "F").resize((mw, mh), Image.Resampling.BILINEAR))
        mask = mask * np.clip(rng.uniform(0.6, 0.85) + 0.5 * grain, 0.2, 1.0)
        ink = np.full(3, rng.uniform(60, 110))
    elif tool == "pen":
        blue = rng.random() < 0.5
        ink = np.array([30, 35, 110]) + rng.uniform(-20, 20, size=3) if blue else rng.uniform(15, 50, size=3)
    else:
        ink = rng.uniform(5, 30, size=3)
    blurred = Image.fromarray(np.rint(mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(focus))
    alpha = np.asarray(blurred, np.float32)[..., None] / 255

    paper = rng.uniform(140, 215) * (1 + rng.uniform(-0.04, 0.04, size=3))
    ruling = rng.choice(["plain", "lined", "squared"], p=[0.5, 0.3, 0.2])
    lines = np.zeros((1, 1), np.float32)  # plain paper: no rules
    if ruling != "plain":
        spacing = rng.uniform(55, 90) if ruling == "lined" else rng.uniform(35, 55)
        width = rng.uniform(1.5, 3.5)
        lines = _ruling(h, w, camera, spacing, width, focus, rng.uniform(0, spacing))
        if ruling == "squared":
            lines = np.maximum(lines, _ruling(h, w, camera + 90, spacing, width, focus, rng.uniform(0, spacing)))
    tint = np.array([0.72, 0.8, 0.95]) if rng.random() < 0.7 else np.array([0.8, 0.8, 0.8])
    strength = rng.uniform(0.5, 1.0)
    light, shadow = _light(h, w, rng)
    oy, ox = rng.integers(0, NOISE_PAD, size=2)
    noise = np.float32(rng.uniform(2, 6)) * _noise_tile()[oy : oy + h, ox : ox + w]  # sensor noise
    chroma = 1.5 * rng.standard_normal((h // 2, w // 2, 3), dtype=np.float32)  # blotchy after the phone's denoiser
    frame = np.empty((h, w, 3), np.uint8)
    box, a = (slice(y0, y0 + mh), slice(x0, x0 + mw)), alpha[..., 0]
    ruled = light * lines if ruling != "plain" else None  # the light the rules' tint takes away, per unit
    for c in range(3):  # one channel at a time: a few frame-sized float passes each, no (h, w, 3) floats
        channel = light * np.float32(paper[c])
        if ruled is not None:
            channel -= ruled * np.float32(paper[c] * strength * (1 - tint[c]))
        channel[box] = channel[box] * (1 - a) + np.float32(ink[c]) * a * light[box]
        channel += noise
        channel.reshape(h // 2, 2, w // 2, 2)[...] += chroma[:, None, :, None, c]  # frame sides are even
        frame[..., c] = np.clip(channel, 0, 255, out=channel)
    buf = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buf, "JPEG", quality=int(rng.integers(70, 96)))
    return Render(buf.getvalue(), f"photo/{tool}/{ruling}" + ("/shadow" if shadow else ""))


def render_png28(digit: np.ndarray, rng: np.random.Generator) -> Render:
    """A dataset digit saved as a PNG: mostly as is, sometimes converted or inverted by the script."""
    variant = rng.choice(["grey", "rgb", "rgba", "inverted"], p=[0.6, 0.15, 0.1, 0.15])
    image = Image.fromarray(digit, "L")
    if variant == "rgb":
        image = image.convert("RGB")
    elif variant == "rgba":
        image = image.convert("RGBA")
    elif variant == "inverted":
        image = Image.fromarray(255 - digit, "L")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return Render(buf.getvalue(), f"png28/{variant}")
