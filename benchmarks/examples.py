"""The README's example files: a JSON digit, a canvas drawing and a phone photo of a 7, a drawing of a 3.

Rendered like the benchmarks' pictures (``benchmarks/renders.py``) from held-out MNIST digits of the offline
set, so they need no network and no model:

    make examples        # or: python benchmarks/examples.py --out examples
    cd examples && curl -s localhost:8000/predict -F file=@seven.jpg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.renders import render_canvas, render_photo
from training.data import load_splits

FILES = ("digit.json", "seven.png", "seven.jpg", "three.png")


def write_examples(out: Path) -> list[Path]:
    """The four files in ``out``, from the first 7 and the first 3 of the offline test digits (split seed 0)."""
    splits = load_splits(None, seed=0, allow_download=False)
    seven = splits.x_test[int(np.flatnonzero(splits.y_test == 7)[0])]
    three = splits.x_test[int(np.flatnonzero(splits.y_test == 3)[0])]
    rng = np.random.default_rng(7)
    contents = {
        "digit.json": orjson.dumps({"image": seven.astype(int).tolist()}),
        "seven.png": render_canvas(seven, rng).data,
        "seven.jpg": render_photo(seven, rng).data,
        "three.png": render_canvas(three, rng).data,
    }
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in FILES:
        (out / name).write_bytes(contents[name])
        written.append(out / name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples"), help="folder to write them in")
    for path in write_examples(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
