"""Accuracy on digits a recipe never saw, over several splits of the offline 5,000 digits (paired: every recipe
gets the same splits and seeds).

For each split seed the pipeline's own stratified 80/10/10 split is made; the recipe is fitted on the 4,000
training digits exactly as `make train` fits it (the 500 validation digits only watch the fit) and scored on
the 1,000 validation + test digits. The 500-digit test split alone is too noisy (±0.5 points) to pick a recipe.
The same 1,000 digits are also drawn as canvases (``benchmarks/renders.py``, seeded by split and digit), shaped by
the service's own input path and scored the same way (no guards: the classifier alone).

    .venv/bin/python benchmarks/unseen_accuracy.py --splits 0 1 2                  # the default recipe
    .venv/bin/python benchmarks/unseen_accuracy.py --splits 0 1 2 -- --label-smoothing 0.1 --ema

Anything after `--` is a `python -m training` flag. Each split appends a JSON line to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.renders

from benchmarks.renders import render_canvas
from registry import Preprocessing
from service.errors import ServiceError
from service.inputs.normalise import image_to_mnist
from service.settings import Settings
from training.config import parse_config
from training.data import load_splits
from training.train import Fitted, fit, served_input, version_preprocessing


def canvases(digits: np.ndarray, seed: int, preprocessing: Preprocessing) -> np.ndarray:
    """Each digit drawn on a 280x280 canvas and shaped as the service shapes an upload: uint8 [N, canvas, canvas];
    one the service would refuse as no digit is black (scored wrong)."""
    settings = Settings()  # the service's own image limits
    side, limits = preprocessing.canvas, {"max_side": settings.max_image_side, "max_pixels": settings.max_image_pixels}
    shaped = np.zeros((len(digits), side, side), np.uint8)
    for i, digit in enumerate(digits):
        data = render_canvas(digit, np.random.default_rng([seed, 0xCA, i])).data
        with contextlib.suppress(ServiceError):
            image = image_to_mnist(data, canvas=side, digit_box=preprocessing.digit_box, **limits)
            shaped[i] = np.rint(image).astype(np.uint8)
    return shaped


def right_share(fitted: Fitted, x: np.ndarray, y: np.ndarray) -> float:
    return float((fitted.classifier.predict(x, batch_size=512, verbose=0).argmax(1) == y).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2], help="split seeds (also the fit's seed)")
    p.add_argument("--label", default="", help="name of the recipe in the output")
    p.add_argument("--out", default="reports/unseen_accuracy.jsonl", help="JSON lines, one per split")
    p.add_argument("training_flags", nargs="*", help="python -m training flags, after --")
    args = p.parse_args()
    label = args.label or " ".join(args.training_flags) or "default"
    scores, drawn_scores = [], []
    for seed in args.splits:
        config = parse_config([*args.training_flags, "--seed", str(seed)])
        splits = load_splits(seed=seed, allow_download=False)
        started = time.perf_counter()
        fitted = fit(splits, config, verbose=0)
        preprocessing = version_preprocessing(config)
        unseen, y = np.concatenate([splits.x_val, splits.x_test]), np.concatenate([splits.y_val, splits.y_test])
        accuracy = right_share(fitted, served_input(unseen, preprocessing), y)
        canvas = right_share(fitted, served_input(canvases(unseen, seed, preprocessing), preprocessing), y)
        row = {"recipe": label, "seed": seed, "accuracy": accuracy, "canvas_accuracy": canvas, "n": len(y)}
        row["fit_s"] = fitted.seconds
        row["total_s"] = time.perf_counter() - started
        print(json.dumps(row), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        scores.append(accuracy)
        drawn_scores.append(canvas)
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    per_split = ", ".join(f"{100 * s:.2f}" for s in scores)
    print(f"{label}: {per_split} -> mean {100 * statistics.mean(scores):.2f} % ± {100 * spread:.2f} (sd)")
    drawn = ", ".join(f"{100 * s:.2f}" for s in drawn_scores)
    print(f"{label}, drawn on canvases: {drawn} -> mean {100 * statistics.mean(drawn_scores):.2f} %")


if __name__ == "__main__":
    main()
