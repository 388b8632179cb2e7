"""Deadlines by the thousand on a few event-loop timers.

Every request carries two deadlines: its body must arrive within
``MNIST_BODY_TIMEOUT_S`` and its answer within ``MNIST_REQUEST_TIMEOUT_S``.
Nearly all are met within milliseconds and dropped. A loop timer each
(``asyncio.timeout``, ``loop.call_later``) costs microseconds to arm and cancel,
a libuv handle each under uvloop: taking them out lifted JSON ``/predict`` at 64
clients by ~6 % in alternated runs, the event loop being the limit.

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
import weakref
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

RESOLUTION_S = 0.01

# Per loop, slot number -> what is still armed in it, by key. Per loop because tests run several in turn and a
# slot's timer belongs to the loop that armed it; weakly, so a loop closed with slots pending is let go.
_Armed = dict[object, Callable[[], object]]
Slot = tuple[dict[int, _Armed], int]
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Armed]] = weakref.WeakKeyDictionary()
_NEVER: Slot = ({}, 0)


def arm(deadline: float, key: object, on_expiry: Callable[[], object]) -> Slot:
    """Call ``on_expiry()`` on this loop once ``deadline`` has passed, unless ``drop(slot, key)`` comes first.

    ``key`` must be unique among the armed deadlines (the waiting object itself). Returns the slot for drop.
    An infinite deadline never fires, as with asyncio; a NaN one is a ValueError.
    """
    if deadline == math.inf:
        return _NEVER
    loop = asyncio.get_running_loop()
    slots = _loops.get(loop)
    if slots is None:
        slots = _loops[loop] = {}
    number = math.floor(deadline / RESOLUTION_S) + 1  # the slot that ends after the deadline
    armed = slots.get(number)
    if armed is None:
        armed = slots[number] = {}
        _schedule(loop, slots, number)
    armed[key] = on_expiry
    return slots, number


def drop(slot: Slot, key: object) -> None:
    slots, number = slot
    armed = slots.get(number)
    if armed is not None:
        armed.pop(key, None)


def _schedule(loop: asyncio.AbstractEventLoop, slots: dict[int, _Armed], number: int) -> None:
    # uvloop rounds timers to whole milliseconds and may run one early: _expire checks the clock again.
    loop.call_later(max(0.0, number * RESOLUTION_S - time.monotonic()), _expire, slots, number)


def _expire(slots: dict[int, _Armed], number: int) -> None:
    if time.monotonic() < number * RESOLUTION_S:
        _schedule(asyncio.get_running_loop(), slots, number)
        return
    for on_expiry in slots.pop(number, {}).values():
        try:
            on_expiry()
        except Exception:  # one broken callback must not leave the others waiting for ever
            log.exception("a deadline callback failed")


def timeout_at(deadline: float) -> TaskTimeout:
    """``with timeout_at(deadline):`` does what ``async with asyncio.timeout_at(deadline):`` does (TimeoutError
    out of the block when ``deadline`` passes while the task waits in it) on a shared slot, not a timer of its own."""
    return TaskTimeout(deadline)


class TaskTimeout:
    __slots__ = ("_cancelling", "_deadline", "_expired", "_slot", "_task")

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("timeout_at is used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._slot = arm(self._deadline, self, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        drop(self._slot, self)
        # As asyncio.Timeout: our cancellation is taken back whatever the block raised, and becomes TimeoutError
        # unless someone else asked for one too while in the block (that one stays a cancellation).
        if self._expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
