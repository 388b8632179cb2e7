"""The README's curl examples send files that `make examples` writes: each one exists and is what it says."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from PIL import Image

from benchmarks.examples import FILES, write_examples

ROOT = Path(__file__).resolve().parents[2]


def test_make_examples_writes_every_file_the_readme_sends(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    sent = set(re.findall(r"@([\w.]+)", "\n".join(line for line in readme.splitlines() if "curl" in line)))
    assert sent == set(FILES)
    written = {path.name: path for path in write_examples(tmp_path / "examples")}
    assert set(written) == set(FILES)
    image = orjson.loads(written["digit.json"].read_bytes())["image"]
    assert len(image) == 28 and all(len(row) == 28 and all(0 <= v <= 255 for v in row) for row in image)
    with Image.open(written["seven.jpg"]) as photo:
        assert photo.format == "JPEG" and min(photo.size) >= 1200  # a phone photo, as the README says
    for name in ("seven.png", "three.png"):
        with Image.open(written[name]) as drawing:
            assert drawing.format == "PNG" and drawing.size == (280, 280)
