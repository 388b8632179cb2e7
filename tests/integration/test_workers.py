"""How ``python -m service`` stops when it cannot serve: a worker that cannot stay up stops the service instead of
being restarted for ever (service.workers), and a configuration error found late exits as one found early."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loadtests.server import free_port

ROOT = Path(__file__).resolve().parents[2]

# An ASGI app that starts, then dies 0.3 s later with the exit code it is given: a crash at each start.
DYING_APP = """
import os
import threading


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        threading.Timer(0.3, os._exit, [int(os.environ["DIE_WITH"])]).start()
        await send({"type": "lifespan.startup.complete"})
        await receive()
"""
RUN = (
    "import sys, uvicorn; from service.workers import run_workers; sys.path.insert(0, sys.argv[1]); "
    "sys.exit(run_workers(uvicorn.Config('dying:app', host='127.0.0.1', port=0, workers=2, log_config=None)))"
)


@pytest.mark.parametrize(
    ("exit_code", "status"),
    [(2, 2), (1, 1)],
    ids=["a configuration error stops at once", "crashes past the restart limit stop"],
)
def test_a_worker_that_cannot_stay_up_stops_the_service(tmp_path: Path, exit_code: int, status: int) -> None:
    (tmp_path / "dying.py").write_text(DYING_APP)
    began = time.monotonic()
    env = {"DIE_WITH": str(exit_code), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == status, done.stderr[-2000:]
    assert time.monotonic() - began < 60  # not one restart after another


# A model manager that finds the device unusable only after the start-up grace (TensorFlow's load takes seconds).
LATE_DEVICE_ERROR = """
import asyncio, sys, uvicorn
from service.app import START_GRACE_S, create_app
from service.errors import DeviceUnavailable
from service.settings import Settings


class LateDeviceError:
    async def start(self):
        await asyncio.sleep(START_GRACE_S + 0.5)
        raise DeviceUnavailable("MNIST_DEVICE=cuda but no GPU is usable")

    async def stop(self):
        pass


uvicorn.run(create_app(Settings(), manager=LateDeviceError()), host="127.0.0.1", port=0, log_config=None)
"""


def test_a_device_error_found_after_the_start_grace_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LATE_DEVICE_ERROR], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr[-2000:]
    logged = done.stdout + done.stderr
    assert "configuration error; stopping" in logged and "no GPU is usable" in logged
    assert "Traceback" not in logged


def test_a_metrics_folder_that_cannot_be_written_is_refused_at_start(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "nowhere"), "MNIST_WORKERS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"PROMETHEUS_MULTIPROC_DIR: {str(tmp_path / 'nowhere')!r} must be a folder this user can write"
    ]


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_grpc_port_in_use_stops_the_service_with_one_line(tmp_path: Path, reuse_port: bool) -> None:
    """Also when its holder allows SO_REUSEPORT, as another gRPC server does: grpc core binds so too, and the service
    started sharing the port and its callers with the other server."""
    with socket.socket() as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "MNIST_MODEL_DIR": str(tmp_path), "MNIST_GRPC_PORT": str(port)}
        done = subprocess.run(
            [sys.executable, "-m", "service", "--port", str(free_port())],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port}: Address already in use (MNIST_GRPC_PORT)"
    ]


def test_every_worker_writes_its_last_log_lines_when_the_service_is_stopped(start_server, tiny_registry: Path) -> None:
    """uvicorn ends a worker stopped by SIGTERM by raising the signal again once it has shut down; its default action
    ended the process before the queued log lines were written ("service stopped" from 0 or 1 of 2 workers)."""
    server = start_server({"MNIST_WORKERS": "2"}, registry=tiny_registry)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert messages.count("service stopped") == 2, messages
    assert sum(m.startswith("Finished server process") for m in messages) == 2, messages


def test_a_metrics_folder_left_by_a_killed_run_is_wiped_at_start(
    start_server, tiny_registry: Path, tmp_path: Path
) -> None:
    """A killed run's gauges stayed in every sum: its requests in flight and its workers serving for ever."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    left = "from service.metrics import IN_FLIGHT; IN_FLIGHT.inc(4); import os; os._exit(0)"  # killed, in effect
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", left], cwd=ROOT, env=env, check=True, timeout=60)
    assert any(path.name.startswith("gauge_livesum_") for path in folder.iterdir())
    server = start_server({"PROMETHEUS_MULTIPROC_DIR": str(folder)}, registry=tiny_registry)
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=5).text
    assert "mnist_requests_in_flight 0.0" in metrics.splitlines()
