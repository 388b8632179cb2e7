"""What keeps the unit tier fast: no TensorFlow import and no child process (``make test-fast``).

A test that needs either belongs in tests/integration/ (TensorFlow, our own processes) or tests/tools/
(external tools such as promtool, hadolint, kubectl). Starting a process fails the test at once. The
TensorFlow check can only see an import made after this file loaded: it is active when the unit tier
runs alone (``pytest tests/unit``), not in a full run where other tiers imported TensorFlow first.
"""

from __future__ import annotations

import subprocess
import sys
import traceback
from collections.abc import Iterator
from importlib.abc import MetaPathFinder
from types import ModuleType
from typing import Any

import pytest

FORBIDDEN = "tensorflow"


class _ImportWatch(MetaPathFinder):
    """Remembers where ``tensorflow`` was first imported from; finds nothing itself."""

    def __init__(self) -> None:
        self.first: str | None = None

    def find_spec(self, name: str, path: Any = None, target: ModuleType | None = None) -> None:
        if self.first is None and name == FORBIDDEN:
            frames = [f for f in traceback.extract_stack() if "/tests/" in f.filename and f.filename != __file__]
            self.first = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown"


_watch = _ImportWatch()
_ALREADY_IMPORTED = FORBIDDEN in sys.modules
if not _ALREADY_IMPORTED:
    sys.meta_path.insert(0, _watch)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _ALREADY_IMPORTED or FORBIDDEN not in sys.modules:
        return
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (
        f"the unit tier imported {FORBIDDEN} (first from {_watch.first}): "
        "make that test TensorFlow-free or move it to tests/integration/"
    )
    if reporter is not None:
        reporter.write_line(f"FAILED unit-tier guard: {message}", red=True, bold=True)


@pytest.fixture(autouse=True)
def _no_child_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unit tests start no process: move this test to tests/integration/ or tests/tools/")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield
