"""docs/images.md's size table against the images just built: a dependency that doubles the serve image
(or a doc that no longer says what a pull costs) fails here."""

from __future__ import annotations

import re

import pytest

from tests.images import buildah
from tests.images.conftest import ROOT

pytestmark = pytest.mark.timeout(900)  # run alone, this module builds the three images

DOC = ROOT / "docs" / "images.md"
TOLERANCE = 0.10  # layers shift by a few MB with each Debian point release and wheel rebuild


def documented_sizes() -> dict[str, float]:
    rows = re.findall(r"^\| `(\w+)` \| ([\d.]+) MB \|", DOC.read_text(), re.MULTILINE)
    return {target: float(size) for target, size in rows}


def test_documented_sizes_match_the_built_images(serve_image: str, baked_image: str, train_image: str) -> None:
    documented = documented_sizes()
    measured = {
        target: buildah.size_bytes(image) / 1e6
        for target, image in (("serve", serve_image), ("baked", baked_image), ("train", train_image))
    }
    assert set(documented) == set(measured), documented
    off = {t: (documented[t], round(measured[t])) for t in measured if abs(measured[t] / documented[t] - 1) > TOLERANCE}
    assert not off, f"docs/images.md sizes (documented, measured MB) off by more than {TOLERANCE:.0%}: {off}"


@pytest.mark.parametrize("target", ["serve", "baked"])
def test_serving_images_stay_slim(target: str, request: pytest.FixtureRequest) -> None:
    # No TensorFlow can hide in a serving image below this (the train image is 2.4 GB).
    assert buildah.size_bytes(request.getfixturevalue(f"{target}_image")) < 700e6
