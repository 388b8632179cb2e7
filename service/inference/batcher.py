"""Dynamic batching: gather concurrent requests into one model call.

Callers ``await submit(images, deadline, runner)``. One background task takes queued submissions
in order into batches, runs each on one dedicated thread (the loop stays free, the model is never
called concurrently) and hands each caller its rows back. A runner's batch-wide steps around the
model call (the guards) run on the loop, once per batch.

When a batch goes (continuous batching: wait only while a call is running,
never longer than ``max_batch_delay_ms``):

* It takes every queued submission that fits (same runner, at most
  ``max_batch_size`` model rows, order kept).
* Model idle: it goes at once; a lone request never waits for companions.
* Model busy: it keeps taking arrivals and goes when the model frees, when
  full, or ``max_batch_delay_ms`` after its first submission, whichever is
  first. Closed early, it is queued on the model thread behind the running
  call, so it starts without a round trip through a busy event loop.
* At most one batch waits behind the running call; the next is gathered when
  that one starts, so the rest stays queued, under ``max_queue_size`` and
  deadlines. ``batching=False``: one submission per call, taken when idle.

The batcher knows nothing about model versions: each submission names the
``Runner`` it must run on and a batch never mixes runners, so a hot swap only
changes what new submissions name while queued and running work finishes on
the model it was prepared for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import metrics
from service.errors import DeadlineExceeded, InferenceError, ModelNotReady, QueueFull
from service.inference.runner import Runner
from service.logging_setup import REQUEST_ID

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Item:
    images: np.ndarray
    size: int  # images.shape[0]
    deadline: float  # time.monotonic() seconds
    runner: Runner
    future: asyncio.Future[tuple[np.ndarray, ...]]
    enqueued: float = field(default_factory=time.monotonic)
    request_id: str | None = field(default_factory=REQUEST_ID.get)  # made in the submitting request's context

    def expire(self) -> None:
        if not self.future.done():
            timeout = self.deadline - self.enqueued
            self.future.set_exception(DeadlineExceeded(f"no result within the {timeout:.3g} s request deadline"))


class Batcher:
    def __init__(
        self,
        *,
        max_batch_size: int,
        max_batch_delay_ms: float,
        max_queue_size: int,
        batching: bool = True,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_batch_delay_ms < 0:
            raise ValueError(
                "max_batch_size and max_queue_size must be >= 1 and max_batch_delay_ms >= 0 "
                "(MNIST_MAX_BATCH_SIZE, MNIST_MAX_QUEUE_SIZE, MNIST_MAX_BATCH_DELAY_MS)"
            )
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_ms / 1000.0
        self.max_queue_size = max_queue_size
        self.batching = batching
        self._queue: deque[_Item] = deque()
        self._depth = 0  # images queued, not yet taken into a batch
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Model calls dispatched and not finished (running + queued behind it), and their futures for stop().
        self._calls: set[asyncio.Future[tuple[np.ndarray, ...]]] = set()

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        # One thread: onnxruntime sessions are thread-safe, but a SavedModel or a future backend need not be.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mnist-model")
        self._task = asyncio.create_task(self._loop(), name="mnist-batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue:
            item = self._take()
            if not item.future.done():
                item.future.set_exception(ModelNotReady("the service is shutting down"))
        if self._executor is not None:
            # Waiting lets the model calls already dispatched finish before their backend may be closed.
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            self._executor = None
        # Their callers are answered by the calls' done callbacks, which run before this await returns.
        await asyncio.gather(*self._calls, return_exceptions=True)

    async def submit(self, images: np.ndarray, deadline: float, runner: Runner) -> tuple[np.ndarray, ...]:
        """The runner's outputs for ``images`` ([N, ...] float32), this submission's rows only.

        Raises QueueFull at once when the queue holds too many images, DeadlineExceeded when
        ``deadline`` (``time.monotonic()`` seconds) passes first, InferenceError when the model call fails.
        """
        if not self.running:
            raise ModelNotReady("the batcher is not running")
        n = int(images.shape[0])
        if n == 0:
            raise ValueError("submit needs at least one image")
        # A submission larger than the whole queue is let in when the queue is empty, or it could never run.
        if self._depth > 0 and self._depth + n > self.max_queue_size:
            raise QueueFull(f"{self._depth} images are waiting for the model; retry shortly", retry_after_s=1)
        if deadline <= time.monotonic():
            raise DeadlineExceeded("the request deadline passed before inference could start")
        item = _Item(images, n, deadline, runner, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._depth += n
        metrics.QUEUE_DEPTH.set(self._depth)
        self._wakeup.set()
        # The deadline settles the future itself (the loop then skips it), so a caller never waits forever.
        timer = asyncio.get_running_loop().call_later(deadline - time.monotonic(), item.expire)
        try:
            return await item.future  # a cancelled caller cancels the future too
        finally:
            timer.cancel()

    async def call_on_model_thread(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the model thread, after any model call already running (used to close old models)."""
        if self._executor is None:
            fn()
            return
        await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # ---- the background task ---------------------------------------------------
    def _take(self) -> _Item:
        item = self._queue.popleft()
        self._depth -= item.size
        metrics.QUEUE_DEPTH.set(self._depth)
        return item

    def _next_live(self) -> _Item | None:
        """Drop items whose caller gave up or whose deadline passed; return the next one still wanted."""
        now = time.monotonic()
        while self._queue:
            head = self._queue[0]
            if head.future.done():
                self._take()
            elif head.deadline <= now:
                self._take().future.set_exception(DeadlineExceeded("the request deadline passed while queued"))
            else:
                return head
        return None

    def images_per_call(self, runner: Runner) -> int:
        return max(1, self.max_batch_size // max(1, runner.rows_per_image))

    async def _wait(self, timeout: float | None = None) -> None:
        """Until a submission arrives or a model call ends (or ``timeout`` seconds pass)."""
        self._wakeup.clear()
        if timeout is None:
            await self._wakeup.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _gather(self) -> list[_Item]:
        # Calls allowed on the model thread before the next batch is taken (see the module docstring):
        # queued items stay counted by QueueFull and checked for deadlines until they can run soon.
        most_calls = 1 if self.batching else 0
        while self._next_live() is None or len(self._calls) > most_calls:
            await self._wait()
        batch: list[_Item] = []
        try:
            first = self._take()
            batch.append(first)
            total = first.size
            if not self.batching:
                return batch
            # Bounded batches keep the pipeline going: the loop parses the next requests during this call.
            limit = self.images_per_call(first.runner)
            close_at = time.monotonic() + self.max_batch_delay_s
            while total < limit:
                head = self._next_live()
                if head is None:
                    # An idle model gains nothing from waiting; a busy one gives companions until it frees.
                    remaining = close_at - time.monotonic()
                    if not self._calls or remaining <= 0:
                        break
                    await self._wait(remaining)
                    continue
                # Order is kept: a submission that does not fit (or needs another model) starts the next batch.
                if (head.runner is not first.runner and head.runner != first.runner) or total + head.size > limit:
                    break
                batch.append(self._take())
                total += head.size
            return batch
        except asyncio.CancelledError:
            # stop() while gathering: these callers are out of the queue, so nobody else would answer them.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ModelNotReady("the service is shutting down"))
            raise

    async def _loop(self) -> None:
        while True:
            self._dispatch(await self._gather())

    def _dispatch(self, batch: list[_Item]) -> None:
        """Prepare ``batch`` on the loop and queue its model call; ``_answer`` routes the rows when it ends."""
        runner = batch[0].runner
        try:
            images = batch[0].images if len(batch) == 1 else np.concatenate([i.images for i in batch], axis=0)
            if runner.model_input is not None:
                images = runner.model_input(images)
            rows = runner.prepare(images) if runner.prepare is not None else images
        except Exception as exc:
            self._fail(batch, exc)
            return
        call = asyncio.get_running_loop().run_in_executor(self._executor, self._call, runner, rows, batch)
        self._calls.add(call)
        # A done callback, not a task: the answer and the next dispatch need no extra turn of the loop.
        call.add_done_callback(lambda done: self._answer(batch, images, done))

    def _answer(self, batch: list[_Item], images: np.ndarray, call: asyncio.Future[tuple[np.ndarray, ...]]) -> None:
        self._calls.discard(call)
        self._wakeup.set()  # the model is free (or one call nearer to it): the gatherer may dispatch
        runner = batch[0].runner
        try:
            outputs = call.result()
            if runner.finish is not None:
                outputs = runner.finish(images, *outputs)
            rows = [output.shape[0] for output in outputs]
            if any(n != len(images) for n in rows):
                raise ValueError(f"the runner returned {rows} rows for {len(images)}")
        except Exception as exc:
            self._fail(batch, exc)
            return
        offset = 0
        for item in batch:
            span = slice(offset, offset + item.size)
            offset += item.size
            if not item.future.done():
                item.future.set_result(tuple(output[span] for output in outputs))

    def _fail(self, batch: list[_Item], exc: Exception) -> None:
        runner = batch[0].runner
        # The batch's requests, each answered inference_failed: the client's X-Request-ID finds this line.
        ids = [item.request_id for item in batch]
        log.error("model call failed", exc_info=exc, extra={"model_version": runner.model_version, "request_ids": ids})
        error = InferenceError(f"the model call failed ({type(exc).__name__}); the batch was not answered")
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    def _call(self, runner: Runner, rows: np.ndarray, batch: list[_Item]) -> tuple[np.ndarray, np.ndarray]:
        """Run on the model thread; more rows than max_batch_size (a large submission) run in chunks."""
        # Measured here, not at dispatch: a batch queued behind a running call is still waiting for the model.
        started = time.monotonic()
        queue_wait = metrics.QUEUE_WAIT.labels(runner.model_version)
        for item in batch:
            queue_wait.observe(started - item.enqueued)
        metrics.BATCH_SIZE.labels(runner.model_version).observe(sum(item.size for item in batch))
        probs_parts, feature_parts = [], []
        for start in range(0, rows.shape[0], self.max_batch_size):
            chunk = rows[start : start + self.max_batch_size]
            began = time.perf_counter()
            probs, features = runner.fn(chunk)
            inference = metrics.INFERENCE_DURATION.labels(runner.model_version, runner.backend, runner.device)
            inference.observe(time.perf_counter() - began)
            if probs.shape[0] != chunk.shape[0] or features.shape[0] != chunk.shape[0]:
                raise ValueError(f"model returned {probs.shape[0]}/{features.shape[0]} rows for {chunk.shape[0]}")
            probs_parts.append(probs)
            feature_parts.append(features)
        if len(probs_parts) == 1:
            return probs_parts[0], feature_parts[0]
        return np.concatenate(probs_parts), np.concatenate(feature_parts)
