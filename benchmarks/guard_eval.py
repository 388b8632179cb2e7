"""How often the input guards refuse digits and non-digits (issue 4, acceptance 2).

Server-free, through the service's own input path and detectors: every image
goes in as a 28x28 JSON-style array (``parse_json_image``) and as a PNG
(``image_to_mnist``), then through the registry version's ONNX model and
``Guards``. Prints refusal rates for held-out MNIST digits, Fashion-MNIST
clothing, uniform noise and blank canvases.

    python benchmarks/guard_eval.py --models models --n 1000
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digits.guards import Guards
from registry import Registry, layout
from service.errors import NoDigit, ServiceError
from service.inference.loaded_model import model_input_step
from service.inputs.json_input import parse_json_image
from service.inputs.normalise import image_to_mnist

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _png(array: np.ndarray, invert: bool) -> bytes:
    img = 255 - array if invert else array
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).resize((280, 280), Image.Resampling.BICUBIC).save(buf, "PNG")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    registry = Registry(args.models)
    version = registry.resolve()
    facts = registry.model_metadata(version)
    folder = registry.version_dir(version)
    guards = Guards(json.loads((folder / layout.GUARDS_FILE).read_text()))
    session = ort.InferenceSession(str(folder / layout.ONNX_FILE), providers=["CPUExecutionProvider"])
    prep = facts.preprocessing
    model_input = model_input_step(prep)  # softened and scaled, as the service does it

    def refused(arrays: list[np.ndarray]) -> list[str | None]:
        x = model_input(np.stack(arrays).astype(np.float32)[..., None])
        probs, feats = session.run(["probabilities", "features"], {"image": guards.expand(x)})
        _, verdicts = guards.judge(x, probs, feats)
        return [v.refusal for v in verdicts]

    def rate(name: str, images: np.ndarray, to_input: Callable[[np.ndarray], np.ndarray]) -> None:
        outcomes: list[str | None] = []
        arrays = []
        for img in images:
            try:
                arrays.append(to_input(img))
            except NoDigit:
                outcomes.append("no_digit")
            except ServiceError as exc:
                outcomes.append(exc.code)
        if arrays:
            outcomes += refused(arrays)
        share = np.mean([o is not None for o in outcomes])
        codes = {c: outcomes.count(c) for c in set(outcomes) if c}
        print(f"{name:<34} {len(outcomes):>5}  refused {100 * share:6.2f} %  {codes}")

    as_json = lambda a: parse_json_image(a.astype(float).tolist())  # noqa: E731
    as_png = lambda a: image_to_mnist(  # noqa: E731
        _png(a, invert=True), max_side=4096, max_pixels=4_000_000, canvas=prep.canvas, digit_box=prep.digit_box
    )

    from training.data import load_splits, read_idx

    splits = load_splits(None, seed=args.seed, allow_download=False)
    digits = np.concatenate([splits.x_test, splits.x_val])[: args.n]
    rng = np.random.default_rng(args.seed)
    print(f"model version {version} ({facts.training_config.get('model', '?')}), data {splits.source}")
    rate("MNIST held-out digits, JSON", digits, as_json)
    rate("MNIST held-out digits, PNG", digits, as_png)
    if FASHION.is_dir():
        clothing = read_idx(next(FASHION.glob("t10k-images-idx3-ubyte*")))[: args.n]
        rate("Fashion-MNIST clothing, JSON", clothing, as_json)
        rate("Fashion-MNIST clothing, PNG", clothing, as_png)
    noise = rng.integers(0, 256, size=(min(args.n, 500), 28, 28)).astype(np.uint8)
    rate("uniform noise, JSON", noise, as_json)
    rate("uniform noise, PNG", noise, as_png)
    blank = np.zeros((50, 28, 28), dtype=np.uint8)
    rate("blank canvas, JSON", blank, as_json)
    rate("blank canvas, PNG", blank, as_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
