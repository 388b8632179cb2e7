"""Edge cases of the request-input helpers: oversized numbers, a saturated decode pool, bad model refs."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from service.api.input_forms import decode_on_pool, parse_json
from service.errors import InvalidJSON, QueueFull
from service.settings import Settings


def test_a_number_too_long_to_convert_is_invalid_json_not_a_500() -> None:
    with pytest.raises(InvalidJSON, match="too long"):
        parse_json(b'{"image": 1' + b"1" * 5000 + b"}")


def test_waiting_for_a_busy_decode_pool_is_queue_full_not_the_images_fault() -> None:
    settings = Settings(request_timeout_s=0.2, decode_timeout_s=0.1)
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(release.wait, 5)  # the only decode thread is busy
        try:
            with pytest.raises(QueueFull):
                asyncio.run(decode_on_pool(b"\x89PNG\r\n\x1a\n", settings, pool))
        finally:
            release.set()


@pytest.mark.parametrize("ref", ["prod", "0", "-1", "../1", ""])
def test_model_ref_must_be_an_alias_or_a_positive_version(ref: str) -> None:
    with pytest.raises(ValidationError, match="MNIST_MODEL_REF"):
        Settings(model_ref=ref)


@pytest.mark.parametrize("ref", ["production", "staging", "7"])
def test_valid_model_refs(ref: str) -> None:
    assert Settings(model_ref=ref).model_ref == ref
