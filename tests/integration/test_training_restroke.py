"""The fit trains on the digits and, by default, on half of them again redrawn with one round brush (``--restroke``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from training import train
from training.config import parse_config
from training.data import load_splits


@pytest.mark.parametrize(("flags", "share"), [([], 0.5), (["--restroke", "0"], 0.0)])
def test_the_fit_adds_the_redrawn_digits_with_their_labels(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], share: float
) -> None:
    splits = load_splits(seed=0, allow_download=False).limited(200)
    seen: dict[str, Any] = {}
    real_dataset = train._dataset

    def spy(x: np.ndarray, y: np.ndarray, config: Any) -> Any:
        seen["x"], seen["y"] = x, y
        return real_dataset(x, y, config)

    monkeypatch.setattr(train, "_dataset", spy)
    config = parse_config([*flags, "--epochs", "1", "--no-outlier-exposure"])
    train.fit(splits, config, verbose=0)
    assert len(seen["y"]) == 200 + round(share * 200)
    assert sorted(set(seen["y"][200:].tolist())) <= list(range(10))
    if share:
        redrawn = (seen["x"][200:, ..., 0] * 255).round().astype(np.uint8)
        assert not any(np.array_equal(r, d) for r in redrawn[:20] for d in splits.x_train)
