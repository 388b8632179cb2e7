"""Edge cases of the request-input helpers: oversized numbers, a saturated decode pool, bad model refs."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from pydantic import ValidationError

from service.api.input_forms import parse_json
from service.errors import DecodeTimeout, InvalidJSON, QueueFull
from service.inputs.decoder import DECODE_THREADS, INLINE_MAX_PIXELS, ImageDecoder
from service.settings import Settings
from tests.helpers import synthetic_digit, to_png
from tests.unit.api_fakes import PNG_MAGIC, FakeManager


def test_a_number_too_long_to_convert_is_invalid_json_not_a_500() -> None:
    with pytest.raises(InvalidJSON, match="malformed JSON at line 1 column 11"):
        parse_json(b'{"image": 1' + b"1" * 5000 + b"}")


def test_waiting_for_a_busy_decode_pool_is_queue_full_not_the_images_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pictures that take too long to decode fail on their own (400); the one that finds every thread busy
    for longer than the request timeout is told to come back (503)."""
    release = threading.Event()

    def stuck(data: bytes, preprocessing: object) -> np.ndarray:
        release.wait(5)
        return np.zeros((28, 28), dtype=np.float32)

    decoder = ImageDecoder(Settings(request_timeout_s=0.2, decode_timeout_s=0.1), FakeManager())
    monkeypatch.setattr(decoder, "decode_now", stuck)

    async def scenario() -> list[object]:
        busy = [asyncio.create_task(decoder(PNG_MAGIC)) for _ in range(DECODE_THREADS)]
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(decoder(PNG_MAGIC))
        return await asyncio.gather(*busy, waiting, return_exceptions=True)

    decoder.start()
    try:
        *busy, waiting = asyncio.run(scenario())
    finally:
        release.set()
        decoder.stop()
    assert all(isinstance(outcome, DecodeTimeout) for outcome in busy)
    assert isinstance(waiting, QueueFull)


def test_a_small_png_is_answered_while_every_decode_thread_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 28x28 digit or a drawing pad's canvas decodes where its request is: it never waits behind photos
    holding the pool. A larger picture still goes to the pool, and waits there (503 once it has waited too long)."""
    release = threading.Event()
    decoder = ImageDecoder(Settings(request_timeout_s=0.2, decode_timeout_s=5), FakeManager())
    real = decoder.decode_now

    def slow_for_magic_alone(data: bytes, preprocessing: object) -> np.ndarray:
        if data == PNG_MAGIC:  # the stand-in for a photo that takes long to decode
            release.wait(5)
        return real(data, preprocessing)

    monkeypatch.setattr(decoder, "decode_now", slow_for_magic_alone)
    digit = synthetic_digit(7)
    side = int(INLINE_MAX_PIXELS**0.5) // 28 + 1  # a canvas just past the inline bound

    async def scenario() -> tuple[list[object], np.ndarray, object]:
        busy = [asyncio.create_task(decoder(PNG_MAGIC)) for _ in range(DECODE_THREADS)]
        await asyncio.sleep(0.05)
        small = await asyncio.wait_for(decoder(to_png(digit, dark_on_light=True, scale=10)), timeout=1)
        large = await asyncio.gather(decoder(to_png(digit, scale=side)), return_exceptions=True)
        release.set()
        return await asyncio.gather(*busy, return_exceptions=True), small, large[0]

    decoder.start()
    try:
        _, small, large = asyncio.run(scenario())
    finally:
        release.set()
        decoder.stop()
    assert small.shape == (28, 28) and small.max() > 200
    assert isinstance(large, QueueFull)


@pytest.mark.parametrize("ref", ["prod", "0", "-1", "../1", ""])
def test_model_ref_must_be_an_alias_or_a_positive_version(ref: str) -> None:
    with pytest.raises(ValidationError, match="MNIST_MODEL_REF"):
        Settings(model_ref=ref)


@pytest.mark.parametrize("ref", ["production", "staging", "7"])
def test_valid_model_refs(ref: str) -> None:
    assert Settings(model_ref=ref).model_ref == ref
