"""How a training run ends when it fails: one line that says what happened and what became of the registry.

No TensorFlow here: ``python -m training`` reports a failure the same way whether it happened before
TensorFlow was imported (an unwritable registry) or deep inside it (a full disk during the SavedModel
export, where TensorFlow raises its own error types that carry the operating system's message).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from registry import RegistryError
from training.data import DataError

if TYPE_CHECKING:
    from sys import UnraisableHookArgs

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # what argparse uses for bad flags; bad data is the same kind of mistake
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT); 143 for SIGTERM

# The operating system's words, for errors that arrive wrapped by TensorFlow rather than as an OSError.
_OS_MESSAGES = {
    errno.ENOSPC: "No space left on device",
    errno.EACCES: "Permission denied",
    errno.EROFS: "Read-only file system",
    errno.EDQUOT: "Disk quota exceeded",
}


class Diverged(Exception):
    """The loss stopped being a number: the step size, not a bug."""


class ParityError(Exception):
    """Keras, SavedModel and ONNX disagree (raised by training.export): nothing is registered."""


class Stages:
    """Where the run is: one line per stage on stdout, and what a failure message needs to know."""

    def __init__(self) -> None:
        self.current = "start"
        self.registered: int | None = None  # the version number once it is published
        self.interrupted = False
        self.stop_signal = signal.SIGINT  # what interrupted it: Ctrl-C, or the SIGTERM of `docker stop` and Kubernetes

    def enter(self, name: str, detail: str = "") -> None:
        if self.interrupted:  # a Ctrl-C that something swallowed still stops the run before the next stage
            raise KeyboardInterrupt
        self.current = name
        print(f"[{name}] {detail}".rstrip(), flush=True)

    def catch_interrupts(self) -> None:
        """Take SIGTERM (what Kubernetes and `docker stop` send) as Ctrl-C, and remember either as well as raising
        it: the run then ends as one does on Ctrl-C, its staging folder removed, nothing registered.

        Remembered because Python drops a KeyboardInterrupt raised while a ``__del__`` or
        a weakref callback runs, and TensorFlow's exports run many of them: one Ctrl-C during the export was
        seen to let the run go on and register its version. Python also prints such a dropped Ctrl-C with its
        traceback ("Exception ignored in ..."); remembered, it needs no more than the run's one closing line."""

        def interrupt(signum: int, frame: FrameType | None) -> None:
            self.interrupted, self.stop_signal = True, signal.Signals(signum)
            raise KeyboardInterrupt

        report_unraisable = sys.unraisablehook

        def quiet_about_ctrl_c(unraisable: UnraisableHookArgs) -> None:
            if not isinstance(unraisable.exc_value, KeyboardInterrupt):
                report_unraisable(unraisable)

        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
        sys.unraisablehook = quiet_about_ctrl_c

    def finished(self) -> None:
        """The version is registered: a signal from here on, while TensorFlow tears down (a second or two),
        would only give a finished run a failure's exit code, and a Job controller would count it failed."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@dataclass(frozen=True)
class Outcome:
    line: str
    exit_code: int
    expected: bool  # False: a bug rather than a condition; the traceback is worth showing too


def explain(exc: BaseException, stages: Stages) -> Outcome:
    """The one line and exit code for a run that raised ``exc`` during ``stages.current``."""
    where = stages.current
    fate = (
        f"version {stages.registered} was registered but not promoted"
        if stages.registered is not None
        else "nothing was registered"
    )
    # Once Ctrl-C was pressed, whatever ends the run is its consequence: tf2onnx's bare ``except:`` clauses
    # swallow a KeyboardInterrupt or turn it into a RuntimeError, and the export then fails in some other way.
    if isinstance(exc, KeyboardInterrupt) or stages.interrupted:
        return Outcome(f"interrupted during {where}; {fate}", 128 + stages.stop_signal, True)
    if isinstance(exc, DataError):
        return Outcome(f"error: {exc}; {fate}", EXIT_BAD_INPUT, True)
    if isinstance(exc, RegistryError):
        return Outcome(f"error: registry refused the version during {where}: {exc}; {fate}", EXIT_FAILED, True)
    if isinstance(exc, MemoryError):
        return Outcome(f"error: out of memory during {where}; {fate}", EXIT_FAILED, True)
    if isinstance(exc, Diverged):
        return Outcome(f"error: training diverged: {exc}; {fate}", EXIT_FAILED, True)
    if isinstance(exc, ParityError):
        return Outcome(f"error: export parity check failed: {exc}; {fate}", EXIT_FAILED, True)
    system = _system_error(exc)
    if system is not None:
        return Outcome(f"error: {system} during {where}; {fate}", EXIT_FAILED, True)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return Outcome(f"error: {type(exc).__name__} during {where}: {detail}; {fate}", EXIT_FAILED, False)


def _system_error(exc: BaseException) -> str | None:
    """A disk, permission or file-system failure in words, with the path when the error names one."""
    if isinstance(exc, OSError) and exc.errno is not None:
        code, words, path = exc.errno, exc.strerror or os.strerror(exc.errno), exc.filename
    else:
        found = next(((c, w) for c, w in _OS_MESSAGES.items() if w in str(exc)), None)
        if found is None:
            return None
        named = re.search(r"(/[^\s;,'\"\]]+)", str(exc))  # TensorFlow's text names the file it was writing
        (code, words), path = found, named.group(1) if named else None
    hint = " (free some space and run again)" if code in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"{words}{f': {path}' if path else ''}{hint}"
