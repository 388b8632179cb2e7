"""Pictures decoded off the event loop, under time budgets, into the served model's canvas.

Decoding is CPU-bound and the machine small: a few threads, so hostile images
cannot take every core, and a time budget each, so none can hold a thread's
answer for ever. Waiting for a free thread is the server's load, not the
image's fault: past the request timeout it is a 503 ``queue_full``; only
decoding itself counts against ``MNIST_DECODE_TIMEOUT_S`` (400).

A small PNG alone in its request (a 28x28 digit, a drawing pad's canvas) is decoded on the
event loop instead: its size, header and chunk list bound the work to a few milliseconds at worst,
less than the hand-off to a pool thread and back costs the process (benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, Protocol

import numpy as np

from registry import Preprocessing
from service.errors import DecodeTimeout, InvalidImage, QueueFull, ServiceError
from service.inputs import normalise
from service.inputs.file_structure import png_chunks, png_size
from service.settings import Settings

log = logging.getLogger(__name__)

DECODE_THREADS = 2
# A PNG within both bounds is decoded where its request is. A 280x280 canvas decodes in ~0.8 ms; a 320x320 one of
# 64 KiB of noise, the worst these allow, ~4.5 ms; the pool hand-off costs ~1 ms of CPU an image under load.
INLINE_MAX_PIXELS = 320 * 320
INLINE_MAX_BYTES = 64 * 1024
# Pillow reads every chunk in Python (~2 us each: 4,000 empty text chunks in 64 KiB took 9 ms), inflates text
# and colour profiles besides the pixels (up to 1 MiB each: 60 of them in 64 KiB took 50 ms) and parses an EXIF
# block entry by entry (a crafted 60 KB one: 60-80 ms). A canvas or a saved digit has a handful of chunks and none
# of these; a PNG past either goes to the pool.
INLINE_MAX_CHUNKS = 32
COSTLY_METADATA = frozenset({b"zTXt", b"iTXt", b"iCCP", b"eXIf"})


# Raises when the caller no longer waits for the picture (over HTTP: the client hung up), never returns.
Abandoned = Callable[[], Awaitable[NoReturn]]


class ServedModel(Protocol):
    """What the decoder asks of the model manager: the picture facts of the version being served."""

    @property
    def preprocessing(self) -> Preprocessing: ...


def _mark_started(started: asyncio.Future[None]) -> None:
    if not started.done():
        started.set_result(None)


class ImageDecoder:
    def __init__(self, settings: Settings, served: ServedModel) -> None:
        self.settings = settings
        self.served = served
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="decode")

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def decode_now(self, data: bytes, preprocessing: Preprocessing) -> np.ndarray:
        """PNG/JPEG bytes -> float32 [canvas, canvas] in 0..255, on the calling thread; domain errors only."""
        try:
            return normalise.image_to_mnist(
                data,
                max_side=self.settings.max_image_side,
                max_pixels=self.settings.max_image_pixels,
                canvas=preprocessing.canvas,
                digit_box=preprocessing.digit_box,
            )
        except ServiceError:
            raise
        except Exception as exc:  # any decoder failure is the image's fault, never a 500
            log.warning("image decoder failed unexpectedly", exc_info=True)
            raise InvalidImage("the image could not be decoded") from exc

    def decodes_inline(self, data: bytes) -> bool:
        """Whether ``data`` is a PNG small enough, by its bytes, its header and its chunks, to decode on the
        event loop."""
        if len(data) > INLINE_MAX_BYTES:
            return False
        size = png_size(data)
        if size is None or size[0] * size[1] > INLINE_MAX_PIXELS:
            return False
        chunks = png_chunks(data, INLINE_MAX_CHUNKS)
        return len(chunks) <= INLINE_MAX_CHUNKS and COSTLY_METADATA.isdisjoint(chunks)

    async def __call__(self, data: bytes, abandoned: Abandoned | None = None) -> np.ndarray:
        """One picture: decoded here when it is a small PNG, else on the pool (``on_pool``)."""
        if self.decodes_inline(data):
            return self.decode_now(data, self.served.preprocessing)
        return await self.on_pool(data, abandoned)

    async def on_pool(self, data: bytes, abandoned: Abandoned | None = None) -> np.ndarray:
        """``decode_now`` on the pool; the decode budget starts when a thread takes the image.

        A picture whose caller leaves while it waits for a thread (``abandoned`` raised) is never decoded:
        callers who hung up would otherwise keep the pool busy for nobody, and later pictures wait or get 503.
        """
        if not data:
            raise InvalidImage("empty image")
        preprocessing = self.served.preprocessing  # the version served now, read once for this image
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def job() -> Any:
            loop.call_soon_threadsafe(_mark_started, started)
            return self.decode_now(data, preprocessing)

        future = loop.run_in_executor(self._pool, job)
        try:
            await self._until_taken(started, abandoned)
        except BaseException:
            future.cancel()  # not started yet: it never will be (one a thread has just taken runs on, unread)
            raise
        try:
            return await asyncio.wait_for(future, timeout=self.settings.decode_timeout_s)
        except TimeoutError as exc:
            raise DecodeTimeout(f"decoding the image took longer than {self.settings.decode_timeout_s} s") from exc

    async def _until_taken(self, started: asyncio.Future[None], abandoned: Abandoned | None) -> None:
        """Wait until a thread takes the picture: QueueFull past the request timeout, ``abandoned``'s error
        when the caller leaves first."""
        watcher = asyncio.ensure_future(abandoned()) if abandoned is not None else None
        waits = [started] if watcher is None else [started, watcher]
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as exc:
            raise QueueFull("too many images are waiting to be decoded; retry shortly") from exc
        finally:
            if watcher is not None:
                watcher.cancel()
        if watcher is not None and not started.done():
            watcher.result()  # the caller left: its error
