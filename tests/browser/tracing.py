"""Pen strokes traced from 28x28 digits, for a browser test to draw, and the same strokes rendered with Pillow.

A digit is thinned to a one-pixel skeleton (Zhang-Suen) and the skeleton walked into polylines: the strokes a
person might have drawn. ``render_png`` draws them the way the pad does (dark marker on white, round caps, the
pad's brush width on its 280 px upload), so a test can ask the model about exactly what it will draw before
drawing it in the browser.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.renders import thin  # the same Zhang-Suen thinning the canvas renders trace

Point = tuple[float, float]  # (x, y) as fractions of the pad's side, 0..1
Stroke = list[Point]
SIDE = 28
# The pad's upload size and brush (service/api/pages/pad.js: UPLOAD_SIDE, BRUSH = UPLOAD_SIDE / 14).
PAD_UPLOAD_SIDE = 280
PAD_BRUSH = PAD_UPLOAD_SIDE / 14
_NEIGHBOURS = [(-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]  # 4-connected first


def _walk(skeleton: np.ndarray) -> list[list[tuple[int, int]]]:
    """The skeleton's pixels as paths: from each free end (or, for loops, the top-left pixel) onwards."""
    pixels = {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton), strict=True)}
    unvisited = set(pixels)

    def around(p: tuple[int, int], among: set[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(p[0] + dr, p[1] + dc) for dr, dc in _NEIGHBOURS if (p[0] + dr, p[1] + dc) in among]

    paths = []
    while unvisited:
        ends = sorted(p for p in unvisited if len(around(p, unvisited)) <= 1)
        start = ends[0] if ends else min(unvisited)
        path = [start]
        unvisited.discard(start)
        while True:
            ahead = around(path[-1], unvisited)
            if not ahead:
                break
            path.append(ahead[0])
            unvisited.discard(ahead[0])
        # A branch starts beside the junction it grows from, and a loop ends beside its start: join them up.
        for end, insert_at in ((path[0], 0), (path[-1], len(path))):
            joins = [q for q in around(end, pixels - set(path))]
            if joins:
                path.insert(insert_at, joins[0])
        if len(path) > 2 and max(abs(path[0][0] - path[-1][0]), abs(path[0][1] - path[-1][1])) <= 1:
            path.append(path[0])
        paths.append(path)
    return paths


def _smoothed(path: list[tuple[int, int]]) -> Stroke:
    """Pixel centres as pad fractions, each inner point averaged 1-2-1 with its neighbours: a hand's line, not
    the skeleton's staircase."""
    points = np.array([(c + 0.5, r + 0.5) for r, c in path], dtype=float) / SIDE
    if len(points) > 2:
        points[1:-1] = (points[:-2] + 2 * points[1:-1] + points[2:]) / 4
    return [(float(x), float(y)) for x, y in points]


def strokes_of(digit: np.ndarray, threshold: int = 100) -> list[Stroke]:
    """Pen strokes of a 28x28 uint8 digit (bright ink), as fractions of the pad, longest first."""
    paths = _walk(thin(np.asarray(digit) >= threshold))
    paths.sort(key=len, reverse=True)
    return [_smoothed(path) for path in paths if len(path) >= 2]


def _as_the_pad_draws(points: list[Point]) -> list[Point]:
    """The polyline of the pad's path through ``points`` (pad.js strokePath): quadratic curves with each inner
    sample as control point and the midpoints as ends, then a line to the last sample; curves flattened."""
    if len(points) < 3:
        return points
    path = [points[0]]
    for (cx, cy), (nx, ny) in itertools.pairwise(points[1:]):
        (sx, sy), (ex, ey) = path[-1], ((cx + nx) / 2, (cy + ny) / 2)
        for t in np.linspace(0, 1, 9)[1:]:
            u = 1 - t
            path.append((u * u * sx + 2 * u * t * cx + t * t * ex, u * u * sy + 2 * u * t * cy + t * t * ey))
    path.append(points[-1])
    return path


def render_png(strokes: list[Stroke], side: int = PAD_UPLOAD_SIDE, brush: float = PAD_BRUSH) -> bytes:
    """The strokes as the pad uploads them: its smoothed path, a dark marker of its width on white, round caps."""
    image = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(image)
    radius = brush / 2
    for stroke in strokes:
        points = [(x * side, y * side) for x, y in _as_the_pad_draws(stroke)]
        draw.line(points, fill=17, width=round(brush), joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=17)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
