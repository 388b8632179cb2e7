"""Fixtures shared by every tier.

``tiny_registry`` trains one real (tiny) model per session through the real
training CLI, so integration tests exercise the same artifacts users get.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from loadtests import server

ROOT = Path(__file__).resolve().parents[1]
# A test's tier is the directory it lives in (markers declared in pyproject.toml): a new file cannot drop out
# of a tier by forgetting a ``pytestmark`` line, and `-m unit` selects exactly what `pytest tests/unit` runs.
TIERS = ("unit", "integration", "browser", "tools", "images", "e2e")

# The property tests' example counts. `make test` (and CI) runs the full profile; `make test-fast`, the
# edit-and-rerun loop, loads "fast" through hypothesis's own --hypothesis-profile flag: a quarter of the
# examples, the same properties.
settings.register_profile("full", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fast", settings.get_profile("full"), max_examples=50)
settings.load_profile("full")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        parts = item.path.resolve().relative_to(tests_dir).parts
        tier = parts[0] if len(parts) > 1 else None
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in one of tests/{{{','.join(TIERS)}}}/")
        others = {mark.name for mark in item.iter_markers() if mark.name in TIERS and mark.name != tier}
        if others:
            raise pytest.UsageError(f"{item.nodeid}: marked {sorted(others)} but lives in tests/{tier}/")
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding one quick-trained, verified, promoted version (read-only by convention)."""
    root = tmp_path_factory.mktemp("registry")
    subprocess.run(
        [sys.executable, "-m", "training", "--registry", str(root), "--quick"],
        check=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return root


@pytest.fixture()
def registry_copy(tiny_registry: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the tiny registry for tests that change it."""
    target = tmp_path / "registry"
    shutil.copytree(tiny_registry, target)
    return target


# ---- a real service process (integration tier) ------------------------------------------


@dataclass
class ServerHandle:
    """A running ``python -m service``: where it listens, the process, the environment it got."""

    base_url: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def stop_server(handle: ServerHandle) -> None:
    server.terminate(handle.process)


def launch_server(
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    registry: Path | None = None,
    wait_ready: bool = True,
    timeout: float = 60.0,
    args: tuple[str, ...] = (),
) -> ServerHandle:
    """Start the service on a free loopback port and wait for live (and ready unless told not to)."""
    port = server.free_port()
    # A clean MNIST_ environment: the developer's own variables must not change what a test sees.
    base = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    full_env = {**base, "MNIST_HOST": "127.0.0.1", "MNIST_PORT": str(port), "MNIST_LOG_LEVEL": "info"}
    if registry is not None:
        full_env["MNIST_MODEL_DIR"] = str(registry)
    full_env.update(env or {})
    log_path = log_dir / f"service-{port}.log"
    process = server.launch([sys.executable, "-m", "service", *args], full_env, log_path)
    handle = ServerHandle(f"http://127.0.0.1:{port}", process, full_env, log_path)
    try:
        server.wait_ready(handle.base_url, process, timeout, server.LIVE_THEN_READY[: 2 if wait_ready else 1])
    except server.ServiceNotReady as exc:
        stop_server(handle)
        pytest.fail(f"{exc}; log tail:\n{handle.logs()[-3000:]}")
    return handle


@contextlib.contextmanager
def running_server(log_dir: Path, env: dict[str, str] | None = None, **kwargs: Any) -> Iterator[ServerHandle]:
    """``launch_server`` for the length of a ``with`` block (module- and session-scoped fixtures)."""
    handle = launch_server(log_dir, env, **kwargs)
    try:
        yield handle
    finally:
        stop_server(handle)


@pytest.fixture()
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerHandle]]:
    """Factory: ``start_server(env={...}, registry=path, wait_ready=True)``; every server stops at teardown."""
    handles: list[ServerHandle] = []

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> ServerHandle:
        handle = launch_server(tmp_path, env, **kwargs)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        stop_server(handle)


@pytest.fixture(scope="session")
def served(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One ready service on the tiny registry, shared by read-only tests of the session."""
    with running_server(tmp_path_factory.mktemp("served"), registry=tiny_registry) as handle:
        yield handle
