"""What keeps the unit tier fast: no TensorFlow import and no child process (``make test-fast``).

A test that needs either belongs in tests/integration/ (TensorFlow, our own processes) or tests/tools/
(external tools such as promtool, hadolint, kubectl). Starting a process fails the test at once. Importing
TensorFlow (in a test or in a module's imports) fails the first test to finish after it, naming where: a check
at each test's teardown, not at the session's end, so it also holds in the pytest-xdist workers ``make
test-fast`` runs the tier on. It can only see an import made after this file loaded: it is active when the
unit tier runs alone (``pytest tests/unit``), not in a full run where other tiers imported TensorFlow first.
"""

from __future__ import annotations

import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
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
_IMPORTED_AT_START = FORBIDDEN in sys.modules
if not _IMPORTED_AT_START:
    sys.meta_path.insert(0, _watch)
_reported: list[bool] = []


@pytest.fixture(autouse=True)
def _no_tensorflow() -> Iterator[None]:
    yield
    if not _IMPORTED_AT_START and not _reported and FORBIDDEN in sys.modules:
        _reported.append(True)  # once: the message names where, and the tests after it are not to blame
        pytest.fail(
            f"the unit tier imported {FORBIDDEN} (first from {_watch.first}): "
            "make that test TensorFlow-free or move it to tests/integration/",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _no_child_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unit tests start no process: move this test to tests/integration/ or tests/tools/")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield


@pytest.fixture()
def make_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """TestClients on the real app with a fake model manager and a fake image decoder, closed after the test.

    ``make_client(manager=None, **settings)``: errors come back as responses (500 included), as a client sees them.
    """
    from starlette.testclient import TestClient

    from service.app import create_app
    from service.inputs import decoder
    from service.settings import Settings
    from tests.unit import api_fakes

    monkeypatch.setattr(decoder.normalise, "image_to_mnist", api_fakes.fake_image_to_mnist)
    clients: list[TestClient] = []

    def factory(manager: api_fakes.FakeManager | None = None, **overrides: Any) -> TestClient:
        app = create_app(Settings(model_dir=tmp_path, **overrides), manager=manager or api_fakes.FakeManager())
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)
