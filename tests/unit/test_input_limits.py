"""Edge cases of the request-input helpers: oversized numbers, a saturated decode pool, bad model refs."""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from pydantic import ValidationError

from service import predict_cli
from service.api.input_forms import parse_json
from service.errors import DecodeTimeout, InvalidJSON, QueueFull
from service.inputs.decoder import DECODE_THREADS, INLINE_MAX_CHUNKS, INLINE_MAX_PIXELS, ImageDecoder
from service.settings import Settings, describe_validation_error
from tests.helpers import synthetic_digit, to_png
from tests.unit.api_fakes import PNG_MAGIC, FakeManager
from tests.unit.input_corpus import png_chunk


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


class HungUp(Exception):
    """What the HTTP layer's watcher raises when the client goes (starlette's ClientDisconnect)."""


@pytest.mark.parametrize("leaves", ["hangs up", "is cancelled"])
def test_a_picture_whose_caller_leaves_while_it_waits_for_a_thread_is_never_decoded(
    monkeypatch: pytest.MonkeyPatch, leaves: str
) -> None:
    """Photos from clients that hung up would keep the pool busy for nobody, and later pictures would wait or get
    503: a picture not yet taken by a thread when its caller leaves is dropped."""
    release, decoded = threading.Event(), []

    def stuck(data: bytes, preprocessing: object) -> np.ndarray:
        release.wait(5)
        decoded.append(data)
        return np.zeros((28, 28), dtype=np.float32)

    decoder = ImageDecoder(Settings(request_timeout_s=5.0, decode_timeout_s=5.0), FakeManager())
    monkeypatch.setattr(decoder, "decode_now", stuck)
    hang_up = asyncio.Event()

    async def client_left() -> NoReturn:
        await hang_up.wait()
        raise HungUp

    async def scenario() -> object:
        busy = [asyncio.create_task(decoder.on_pool(b"busy")) for _ in range(DECODE_THREADS)]
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(decoder.on_pool(b"left", client_left))
        await asyncio.sleep(0.05)
        if leaves == "hangs up":
            hang_up.set()
        else:
            waiting.cancel()  # a request cancelled for any other reason
        outcome = (await asyncio.gather(waiting, return_exceptions=True))[0]
        release.set()
        await asyncio.gather(*busy)
        await asyncio.sleep(0.1)  # a job left queued would now run on a freed thread
        return outcome

    decoder.start()
    try:
        outcome = asyncio.run(scenario())
    finally:
        release.set()
        decoder.stop()
    assert isinstance(outcome, HungUp if leaves == "hangs up" else asyncio.CancelledError)
    assert decoded == [b"busy"] * DECODE_THREADS


def test_a_caller_that_stays_gets_its_picture_decoded_on_the_pool() -> None:
    decoder = ImageDecoder(Settings(), FakeManager())

    async def never_leaves() -> NoReturn:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def scenario() -> np.ndarray:
        return await decoder.on_pool(to_png(synthetic_digit(), dark_on_light=True, scale=10), never_leaves)

    decoder.start()
    try:
        image = asyncio.run(scenario())
    finally:
        decoder.stop()
    assert image.shape == (28, 28) and image.max() > 200


def _with_chunks(png: bytes, chunks: bytes) -> bytes:
    """The PNG with ``chunks`` after its header chunk (8 bytes of signature, 25 of IHDR)."""
    return png[:33] + chunks + png[33:]


def _past_the_pixel_bound(digit: np.ndarray) -> bytes:
    return to_png(digit, scale=int(INLINE_MAX_PIXELS**0.5) // 28 + 1)


def _carrying_inflated_text(digit: np.ndarray) -> bytes:
    # 1 MiB of text in 1 KiB: Pillow inflates it while reading the file (~1 ms each, 64 of them allowed).
    text = png_chunk(b"zTXt", b"note\x00\x00" + zlib.compress(b"\x00" * (1 << 20), 9))
    return _with_chunks(to_png(digit, scale=10), text)


def _carrying_a_colour_profile(digit: np.ndarray) -> bytes:
    profile = png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * (1 << 20), 9))
    return _with_chunks(to_png(digit, scale=10), profile)


def _carrying_exif(digit: np.ndarray) -> bytes:
    # Pillow parses an EXIF block entry by entry: thousands of entries take tens of milliseconds.
    return _with_chunks(to_png(digit, scale=10), png_chunk(b"eXIf", b"II*\x00\x08\x00\x00\x00\x00\x00"))


def _in_many_chunks(digit: np.ndarray) -> bytes:
    # Pillow reads each chunk in Python: thousands of empty ones would hold the loop for milliseconds.
    return _with_chunks(to_png(digit, scale=10), png_chunk(b"tEXt", b"k\x00v") * INLINE_MAX_CHUNKS)


@pytest.mark.parametrize(
    "waits",
    [_past_the_pixel_bound, _carrying_inflated_text, _carrying_a_colour_profile, _carrying_exif, _in_many_chunks],
)
def test_a_small_png_is_answered_while_every_decode_thread_is_busy(
    monkeypatch: pytest.MonkeyPatch, waits: Callable[[np.ndarray], bytes]
) -> None:
    """A 28x28 digit or a drawing pad's canvas decodes where its request is: it never waits behind photos
    holding the pool. A picture whose decoding the inline bounds do not cap (larger, or with metadata Pillow
    inflates, or in more chunks than a plain PNG has) goes to the pool, and waits there (503 once it has
    waited too long)."""
    release = threading.Event()
    decoder = ImageDecoder(Settings(request_timeout_s=0.2, decode_timeout_s=5), FakeManager())
    real = decoder.decode_now

    def slow_for_magic_alone(data: bytes, preprocessing: object) -> np.ndarray:
        if data == PNG_MAGIC:  # the stand-in for a photo that takes long to decode
            release.wait(5)
        return real(data, preprocessing)

    monkeypatch.setattr(decoder, "decode_now", slow_for_magic_alone)
    digit = synthetic_digit(7)
    waiting = waits(digit)
    assert real(waiting, FakeManager().preprocessing).max() > 200  # a picture the service answers, off the loop

    async def scenario() -> tuple[list[object], np.ndarray, object]:
        busy = [asyncio.create_task(decoder(PNG_MAGIC)) for _ in range(DECODE_THREADS)]
        await asyncio.sleep(0.05)
        small = await asyncio.wait_for(decoder(to_png(digit, dark_on_light=True, scale=10)), timeout=1)
        large = await asyncio.gather(decoder(waiting), return_exceptions=True)
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


def test_the_inline_bounds_count_every_chunk_up_to_the_end() -> None:
    decoder = ImageDecoder(Settings(), FakeManager())
    plain = to_png(synthetic_digit(7), scale=10)  # header, pixels, end: three chunks
    text = png_chunk(b"tEXt", b"k\x00v")
    assert decoder.decodes_inline(_with_chunks(plain, text * (INLINE_MAX_CHUNKS - 3)))
    assert not decoder.decodes_inline(_with_chunks(plain, text * (INLINE_MAX_CHUNKS - 2)))
    assert decoder.decodes_inline(plain + text * 40)  # past the end chunk: never read


@pytest.mark.parametrize("ref", ["prod", "0", "-1", "../1", "", "1000000000"])
def test_model_ref_must_be_an_alias_or_a_positive_version(ref: str) -> None:
    with pytest.raises(ValidationError, match="MNIST_MODEL_REF"):
        Settings(model_ref=ref)


@pytest.mark.parametrize("ref", ["production", "staging", "7"])
def test_valid_model_refs(ref: str) -> None:
    assert Settings(model_ref=ref).model_ref == ref


def test_a_settings_error_names_the_variable_and_never_shows_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_ADMIN_TOKEN", "s3cretpw")
    with pytest.raises(ValidationError) as short:
        Settings()
    assert describe_validation_error(short.value) == (
        "invalid configuration:\n  MNIST_ADMIN_TOKEN must be at least 16 characters (or unset to disable /admin)"
    )
    monkeypatch.setenv("MNIST_ADMIN_TOKEN", "")
    with pytest.raises(ValidationError) as empty:
        Settings(port="eighty")
    text = describe_validation_error(empty.value)
    assert "MNIST_PORT: Input should be a valid integer" in text and "(got 'eighty')" in text


def test_the_predict_commands_version_is_checked_as_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        predict_cli.parse_args(["--version", "abc", "digit.png"])
    assert done.value.code == 2
    assert "argument --version: must be an alias (production, staging) or a version number in 1..999999999" in (
        capsys.readouterr().err
    )
    assert predict_cli.parse_args(["--version", "staging", "digit.png"]).version == "staging"


def test_a_registry_root_that_is_a_file_is_a_settings_error(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("")
    with pytest.raises(ValidationError) as caught:
        Settings(model_dir=tmp_path / "models")
    assert "MNIST_MODEL_DIR: must be a folder (the registry root), and this is a file" in describe_validation_error(
        caught.value
    )
    assert Settings(model_dir=tmp_path / "not-yet").model_dir == tmp_path / "not-yet"  # absent: waits for training


def test_a_registry_root_that_cannot_be_looked_at_is_a_settings_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(model_dir=tmp_path / ("a" * 300))
    assert "MNIST_MODEL_DIR: cannot be looked at: File name too long" in describe_validation_error(caught.value)


def test_the_worded_choices_are_taken_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_LOG_LEVEL", "WARNING")  # logging's own spelling
    monkeypatch.setenv("MNIST_BACKEND", "ONNX")
    monkeypatch.setenv("MNIST_DEVICE", "CPU")
    settings = Settings()
    assert (settings.log_level, settings.backend, settings.device) == ("warning", "onnx", "cpu")
    monkeypatch.setenv("MNIST_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "MNIST_LOG_LEVEL: Input should be 'debug', 'info', 'warning' or 'error' (got 'verbose')" in (
        describe_validation_error(caught.value)
    )


@pytest.mark.parametrize("host", ["", " 127.0.0.1", "0.0.0.0 "])
def test_an_empty_host_is_refused_rather_than_listening_everywhere(host: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(host=host)
    assert "MNIST_HOST: must be an address to listen on" in describe_validation_error(caught.value)


@pytest.mark.parametrize(("values", "variable"), [
    ({"poll_interval_s": 1e-9}, "MNIST_POLL_INTERVAL_S: must be 0 (off) or at least 0.1 s"),
    ({"request_timeout_s": 1e-6}, "MNIST_REQUEST_TIMEOUT_S: Input should be greater than or equal to 0.01"),
])  # fmt: skip
def test_values_that_would_leave_the_service_useless_are_refused(values: dict[str, float], variable: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    assert variable in describe_validation_error(caught.value)
    assert Settings(poll_interval_s=0).poll_interval_s == 0  # off stays allowed


def test_a_batch_keeps_its_refused_pictures_refusals_but_not_their_pixels() -> None:
    """Blank 1000x1000 pictures are refused one by one; each refusal waits for the batch's answer, and it kept the
    decoder's frames, each holding its picture decoded at full size (a batch of 198 such PNGs held over 1 GB)."""
    import tracemalloc

    from service.api.input_forms import _settled
    from service.errors import NoDigit

    blank = to_png(np.zeros((1000, 1000), np.uint8))
    decoder, served = ImageDecoder(Settings(), FakeManager()), FakeManager().preprocessing

    async def decode(data: bytes, abandoned: object) -> np.ndarray:  # the pool's work, here on the loop
        return decoder.decode_now(data, served)

    async def batch() -> list[object]:
        return [await _settled(blank, decode, None) for _ in range(8)]  # type: ignore[arg-type]

    tracemalloc.start()
    try:
        slots = asyncio.run(batch())
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(isinstance(slot, NoDigit) for slot in slots)
    assert held < 2_000_000, f"{held:,} bytes still held by 8 refusals"


def test_an_mnist_variable_that_names_no_setting_is_said_with_the_nearest_that_does() -> None:
    """pydantic-settings ignores them: a typo left the default in force without a word."""
    from service.settings import unknown_variables

    environ = {
        "MNIST_MAX_BODY_BYTE": "1024",
        "MNIST_PORT": "8001",
        "mnist_workers": "2",
        "MNIST_COLOUR": "x",
        "HOME": "/",
    }
    assert unknown_variables(environ) == [
        "MNIST_COLOUR is not a setting and is ignored",
        "MNIST_MAX_BODY_BYTE is not a setting and is ignored; did you mean MNIST_MAX_BODY_BYTES?",
    ]
