"""Start a server on a free loopback port, wait until it is live and ready, stop it as a process group.

The one copy of this for the integration tests (tests/conftest.py), the load test (loadtests/run.py) and
the benchmark (benchmarks/serve_bench.py). It lives here rather than in the installed packages, which
must not carry tooling that starts servers, or in tests/, which the other two should not import: the
tests and the benchmark already import loadtests.*. Standard library only (urllib, not httpx), so it
runs in any of the three environments and stays outside Locust's gevent patching.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIVE_THEN_READY = ("/health/live", "/health/ready")
# Each worker of a multi-worker server listens on a socket of its own (service.workers) and a fresh connection
# reaches one of them as the kernel's hash falls: 16 answers in a row miss one of two workers about 1 time in 33,000.
READY_STREAK = 16


class ServiceNotReady(RuntimeError):
    """The server exited, or a health path did not answer 200 in time."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_command(port: int, *args: str) -> list[str]:
    """``python -m service`` on ``127.0.0.1:port`` with this interpreter."""
    return [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), *args]


def launch(cmd: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with exactly ``env``, its output in ``log_path``, in a session of its own: ``terminate``
    then stops it as a group, the workers of a multi-worker server included."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes] | None = None,
    timeout_s: float = 60.0,
    paths: Sequence[str] = LIVE_THEN_READY,
) -> None:
    """Poll each of ``paths`` in turn (live, then ready) until it answers 200; the last one READY_STREAK
    times in a row, each on a fresh connection, so that every worker of a multi-worker server answers it.

    Raises ServiceNotReady, saying what was last heard, when time runs out or ``process`` exits first.
    """
    deadline = time.monotonic() + timeout_s
    for path in paths:
        needed = READY_STREAK if path == paths[-1] else 1
        streak, last = 0, "no answer"
        while streak < needed:
            if process is not None and process.poll() is not None:
                raise ServiceNotReady(f"the server exited with code {process.returncode} before {path} answered 200")
            last = _status(url.rstrip("/") + path)
            if last == "HTTP 200":
                streak += 1
                continue
            streak = 0
            if time.monotonic() >= deadline:
                raise ServiceNotReady(f"{url}{path} did not answer 200 within {timeout_s:g} s (last: {last})")
            time.sleep(0.05)


def _status(url: str) -> str:
    """What a GET on a fresh connection got: "HTTP <status>", or the connection's error."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except OSError as exc:
        return str(exc)


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM (uvicorn drains and exits), then SIGKILL after ``timeout_s``: to the process group when the
    process leads one (``launch``), else to the process alone."""

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    if process.poll() is not None:
        return
    send(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout=5)


@contextlib.contextmanager
def running(
    cmd: Sequence[str],
    url: str,
    env: dict[str, str],
    log_path: Path,
    timeout_s: float = 60.0,
    paths: Sequence[str] = LIVE_THEN_READY,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """``launch`` + ``wait_ready`` for the length of a ``with`` block; stopped by ``terminate`` whatever happens."""
    process = launch(cmd, env, log_path, cwd)
    try:
        wait_ready(url, process, timeout_s, paths)
        yield process
    finally:
        terminate(process)
