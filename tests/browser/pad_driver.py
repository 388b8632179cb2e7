"""Driving the digit pad through its stable test hooks (``data-testid``), and choosing what to draw.

``Pad`` does what a person does: pointer strokes on the canvas, clicks, a file in the picker; and reads what a
person sees. ``drawable_digits`` picks held-out digits whose traced strokes the served model reads correctly,
asking the API first (see its docstring for why).
"""

from __future__ import annotations

import json
import re
import statistics
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
from playwright.sync_api import Page, expect

from tests.browser.tracing import Stroke, render_png, strokes_of

ANSWER = "[data-testid=answer]"
# pad.js sets it: ms from a stroke's end to the frame that paints its answer.
STROKE_TIMING, STROKE_TIMING_ATTRIBUTE = "strokeToShownMs", "data-stroke-to-shown-ms"
# Waits go through Playwright's expect: a string predicate polled by wait_for_function is evaluated with eval,
# which the page's Content-Security-Policy rightly forbids.


def by_testid(name: str) -> str:
    return f"[data-testid={name}]"


class Pad:
    def __init__(self, page: Page) -> None:
        self.page = page

    def open(self, base_url: str) -> Any:
        response = self.page.goto(base_url + "/")
        self.page.wait_for_selector(by_testid("pad"))
        return response

    def _box(self) -> dict[str, float]:
        box = self.page.locator(by_testid("pad")).bounding_box()
        assert box is not None, "the pad is not on screen"
        return box

    def stroke(self, stroke: Stroke, *, timed: bool = True, steps: int = 1) -> float | None:
        """One pointer stroke (mouse down, moves, up); with ``timed``, wait for its answer and return the pad's
        own figure of ms from the stroke's end to the painted answer."""
        box = self._box()
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        if timed:
            self.page.evaluate(f"delete document.querySelector('{ANSWER}').dataset.{STROKE_TIMING}")
        self.page.mouse.move(*points[0])
        self.page.mouse.down()
        for point in points[1:]:
            self.page.mouse.move(*point, steps=steps)
        self.page.mouse.up()
        if not timed:
            return None
        answer = self.page.locator(ANSWER)
        expect(answer).to_have_attribute(STROKE_TIMING_ATTRIBUTE, re.compile(r"^[0-9.]+$"), timeout=10_000)
        return float(answer.get_attribute(STROKE_TIMING_ATTRIBUTE) or "nan")

    def draw(self, strokes: list[Stroke]) -> list[float]:
        """Every stroke of a digit; the ms from each stroke's end to its painted answer."""
        return [ms for stroke in strokes if (ms := self.stroke(stroke)) is not None]

    def draw_digit(self, drawable: Drawable) -> None:
        """Every stroke of a digit the service reads, without timing them; then its reading on screen."""
        for stroke in drawable.strokes:
            self.stroke(stroke, timed=False)
        expect(self.page.locator(by_testid("digit"))).to_have_text(str(drawable.label))

    def clear(self) -> None:
        self.page.locator(by_testid("clear")).click()

    def digit(self) -> str:
        return self.page.locator(by_testid("digit")).inner_text().strip()

    def message(self) -> str:
        return self.page.locator(by_testid("message")).inner_text().strip()

    def ink_pixels(self) -> int:
        """Dark pixels on the pad's canvas once it has repainted (on the next frame): what is drawn on it."""
        return int(
            self.page.evaluate(
                """async () => {
                  await new Promise((resolve) => requestAnimationFrame(resolve));
                  const c = document.querySelector('[data-testid=pad]');
                  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n += 1; return n;
                }"""
            )
        )

    def model_input_ink(self) -> int:
        """Bright pixels of the 28x28 view, 0 while it is hidden: the picture the service made is shown."""
        return int(
            self.page.evaluate(
                """() => {
                  const fig = document.querySelector('#input-figure');
                  if (fig.hidden) return 0;
                  const c = document.querySelector('[data-testid=model-input]');
                  const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;
                  let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 127) n += 1; return n;
                }"""
            )
        )


def post_png(base_url: str, png: bytes) -> dict[str, Any]:
    """POST /predict with a PNG body (the API, not the browser); the answer or the error envelope."""
    request = urllib.request.Request(
        base_url + "/predict", data=png, headers={"Content-Type": "image/png"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))


@dataclass(frozen=True)
class Drawable:
    label: int
    strokes: list[Stroke]
    confidence: float  # the served model's, on the strokes rendered as the pad renders them


def drawable_digits(base_url: str, x: np.ndarray, y: np.ndarray, min_confidence: float = 0.9) -> list[Drawable]:
    """For each digit 0..9, the first held-out digit whose traced strokes the served model reads as that digit.

    Why ask the API first: the tiny model the tests train in a minute is weak, and a trace is not the digit
    itself; which digits it reads right is the model's business, not the pad's. So each candidate's strokes are
    rendered the way the pad renders its upload (``tracing.render_png``) and sent to POST /predict; only those
    read right with at least ``min_confidence`` (a margin for the browser's anti-aliasing) are drawn. The browser
    test then asserts the pad shows exactly that reading: the pad's behaviour is under test, and it cannot pass
    by luck, since a wrong digit, a refusal or no answer fails it.
    """
    chosen: list[Drawable] = []
    for digit in range(10):
        for index in np.flatnonzero(y == digit)[:25]:
            strokes = strokes_of(x[index])
            answer = post_png(base_url, render_png(strokes))
            if answer.get("digit") == digit and answer["confidence"] >= min_confidence:
                chosen.append(Drawable(digit, strokes, float(answer["confidence"])))
                break
    return chosen


def summary_ms(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"{len(times)} strokes: median {statistics.median(times):.1f} ms, p90 {p90:.1f} ms, "
        f"max {max(times):.1f} ms, min {min(times):.1f} ms (each: {', '.join(f'{t:.0f}' for t in times)})"
    )


def refused_scribble(base_url: str) -> list[Stroke]:
    """A zigzag across the pad that the served model's guards refuse as not a digit, checked through the API
    first (with the same rendering as the pad's), for the same reason as ``drawable_digits``."""
    for seed in range(40):
        points = np.random.default_rng(seed).uniform(0.08, 0.92, size=(14, 2))
        scribble = [[(float(px), float(py)) for px, py in points]]
        answer = post_png(base_url, render_png(scribble))
        if answer.get("error", {}).get("code") == "not_a_digit":
            return scribble
    raise AssertionError("no scribble of 40 was refused as not_a_digit by the served model's guards")
