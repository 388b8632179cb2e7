"""An Open Inference Protocol request that names its model version is answered by that version or refused.

A swap can land while the request's body arrives or its batch waits: the answer would then come from a version the
client did not ask for, under a header that names it. It is refused as the version not being served (404).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from registry import VersionNotFound
from service.api.oip_answer import predict_all
from tests.unit.api_fakes import FakePrediction

SERVED = 2


class SwappedManager:
    """Answers every image as version 2, as a manager does right after swapping version 1 out."""

    async def predict(self, images: np.ndarray, *, features: bool = False) -> list[Any]:
        return [FakePrediction(7, 0.99, [0.0] * 7 + [0.99] + [0.0] * 2, SERVED) for _ in images]


def answer(pinned: int | None) -> list[Any]:
    state = SimpleNamespace(manager=SwappedManager(), settings=SimpleNamespace(return_probabilities=True))
    return asyncio.run(predict_all(state, np.zeros((2, 28, 28), np.float32), False, pinned))


def test_a_request_for_a_version_swapped_out_meanwhile_is_version_not_found() -> None:
    with pytest.raises(VersionNotFound) as info:
        answer(pinned=1)
    assert str(info.value) == "version 1 was swapped out; this replica serves 2"


@pytest.mark.parametrize("pinned", [SERVED, None])
def test_the_version_named_or_none_named_is_answered(pinned: int | None) -> None:
    assert [result.model_version for result in answer(pinned)] == [SERVED, SERVED]
