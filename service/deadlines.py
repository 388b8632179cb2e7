"""Deadlines by the thousand on a few event-loop timers.

Every request carries two deadlines: its body must arrive within
``MNIST_BODY_TIMEOUT_S`` and its answer within ``MNIST_REQUEST_TIMEOUT_S``.
Nearly all are met within milliseconds and dropped. A loop timer each
(``asyncio.timeout``, ``loop.call_later``) costs microseconds to arm and cancel,
a libuv handle each under uvloop: taking them out lifted JSON ``/predict`` at 64
clients by ~6 % (``make bench``), the event loop being the limit.

Here a deadline joins the slot of ``RESOLUTION_S`` it falls in, and one timer per
slot runs what is still in it when the slot ends. Arming and dropping a deadline
is a dict insert and a dict delete. A deadline fires up to ``RESOLUTION_S``
late, never early. Times are ``time.monotonic()`` seconds, like the batcher's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

RESOLUTION_S = 0.01

# (loop, slot number) -> what is still armed in it, by key. The loop is part of the key: tests run several
# loops in turn, and a slot's timer belongs to the loop that armed it.
_Slot = tuple[asyncio.AbstractEventLoop, int]
_slots: dict[_Slot, dict[object, Callable[[], object]]] = {}


def arm(deadline: float, key: object, on_expiry: Callable[[], object]) -> _Slot:
    """Call ``on_expiry()`` on this loop once ``deadline`` has passed, unless ``drop(slot, key)`` comes first.

    ``key`` must be unique among the armed deadlines (the waiting object itself). Returns the slot for drop.
    """
    slot = (asyncio.get_running_loop(), math.ceil(deadline / RESOLUTION_S))
    armed = _slots.get(slot)
    if armed is None:
        armed = _slots[slot] = {}
        _schedule(slot)
    armed[key] = on_expiry
    return slot


def drop(slot: _Slot, key: object) -> None:
    armed = _slots.get(slot)
    if armed is not None:
        armed.pop(key, None)


def _schedule(slot: _Slot) -> None:
    loop, number = slot
    # uvloop rounds timers to whole milliseconds and may run one early: _expire checks the clock again.
    loop.call_later(max(0.0, number * RESOLUTION_S - time.monotonic()), _expire, slot)


def _expire(slot: _Slot) -> None:
    if time.monotonic() < slot[1] * RESOLUTION_S:
        _schedule(slot)
        return
    for on_expiry in _slots.pop(slot, {}).values():
        try:
            on_expiry()
        except Exception:  # one broken callback must not leave the others waiting for ever
            log.exception("a deadline callback failed")


def timeout_at(deadline: float) -> TaskTimeout:
    """``with timeout_at(deadline):`` does what ``async with asyncio.timeout_at(deadline):`` does (TimeoutError
    out of the block when ``deadline`` passes while the task waits in it) on a shared slot, not a timer of its own."""
    return TaskTimeout(deadline)


class TaskTimeout:
    __slots__ = ("_deadline", "_expired", "_slot", "_task")

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("timeout_at is used inside a task")
        self._task = task
        self._slot = arm(self._deadline, self, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        drop(self._slot, self)
        # Our cancellation becomes TimeoutError; one asked for by anyone else as well stays a cancellation.
        if self._expired and exc_type is asyncio.CancelledError and self._task.uncancel() == 0:
            raise TimeoutError from exc
