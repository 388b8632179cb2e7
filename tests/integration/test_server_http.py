"""The server layer ``python -m service`` runs under (service.__main__.serve), exercised on the benchmark's
bare ASGI app so no model is needed: the request-head cap holds with whichever HTTP parser is in use,
several workers answer without the 40 ms delayed-ACK stall a socket without TCP_NODELAY causes, and
connections opened together are spread over the workers (service.workers)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from benchmarks.loadgen import run, run_cell
from loadtests.server import free_port, launch, terminate, wait_ready

BODY = b'{"image":[' + b",".join([b"[" + b",".join([b"0"] * 28) + b"]"] * 28) + b"]}"


def request(head_extra: bytes = b"") -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: t\r\n%bContent-Length: %d\r\n\r\n%b" % (head_extra, len(BODY), BODY)


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def ceiling_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, psutil.Process]]:
    port = free_port()
    cmd = [sys.executable, "benchmarks/ceiling_app.py", "--port", str(port), "--workers", str(request.param)]
    proc = launch(cmd, dict(os.environ), tmp_path_factory.mktemp("ceiling") / "ceiling.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, timeout_s=30, paths=["/health/ready"])  # its one health path
        yield port, psutil.Process(proc.pid)
    finally:
        terminate(proc)


@pytest.fixture
def ceiling(ceiling_server: tuple[int, psutil.Process]) -> int:
    return ceiling_server[0]


def exchange(port: int, data: bytes, pieces: int = 1) -> bytes:
    """Send ``data`` in ``pieces`` (as a slow client would) and return the status line, or b"" if cut off."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        step = len(data) // pieces + 1
        try:
            for start in range(0, len(data), step):
                sock.sendall(data[start : start + step])
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-send; the answer may still be readable
        try:
            return sock.makefile("rb").readline().rstrip()
        except ConnectionResetError:
            return b""


def test_a_head_over_16_kib_is_refused_while_a_large_body_is_not(ceiling: int) -> None:
    assert exchange(ceiling, request()) == b"HTTP/1.1 200 OK"
    assert exchange(ceiling, request(b"X-Pad: " + b"a" * 10_000 + b"\r\n"), pieces=8) == b"HTTP/1.1 200 OK"
    refused = exchange(ceiling, request(b"X-Pad: " + b"a" * 40_000 + b"\r\n"), pieces=8)
    assert refused in (b"HTTP/1.1 400 Bad Request", b"")


def test_small_requests_do_not_wait_for_delayed_acks(ceiling: int) -> None:
    with socket.create_connection(("127.0.0.1", ceiling), timeout=5) as sock:
        reader = sock.makefile("rb")
        began = time.perf_counter()
        for _ in range(20):
            sock.sendall(request())
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
        # Without TCP_NODELAY each answer waits ~40 ms for the client's delayed ACK: 20 would take ~0.8 s.
        assert (time.perf_counter() - began) / 20 < 0.02


def test_the_bench_load_generator_counts_answers_and_reconnects(ceiling: int) -> None:
    """``make bench``'s client: every answer counted, and a server that closes the connection (here on the
    client's own ``Connection: close``) costs a reconnect, not an error or a stalled connection."""
    closing = request(b"Connection: close\r\n")
    # Connections 0 and 2 always send the first request, 1 and 3 the second (round-robin by connection).
    result = run(run_cell(ceiling, [request(), closing], concurrency=4, warmup_s=0.1, duration_s=0.6))
    assert result.completed > 40 and result.errors == 0 and set(result.statuses) == {200}
    assert len(result.latencies_s) >= result.completed and result.client_cpu > 0
    assert result.machine_cpu > 0 and result.cpu_us_per_request > 0


def _held(process: psutil.Process, port: int, status: str) -> int:
    # connections(), not net_connections(): the kserve SDK caps psutil below 6 (pyproject.toml).
    return sum(1 for c in process.connections("tcp") if c.status == status and c.laddr and c.laddr.port == port)


def _listening_socket(process: psutil.Process, port: int) -> str:
    (fd,) = {c.fd for c in process.connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return os.readlink(f"/proc/{process.pid}/fd/{fd}")  # "socket:[inode]": the same inode is the same socket


@pytest.mark.parametrize("ceiling_server", [2], indirect=True, ids=["2-workers"])
def test_connections_opened_together_are_spread_over_the_workers(ceiling_server: tuple[int, psutil.Process]) -> None:
    """A client pool (a proxy, the bench) opens its keep-alive connections at once. On one shared socket the
    worker that woke first accepted them all and the other idled; each worker's own socket takes a share."""
    port, parent = ceiling_server
    workers = [p for p in parent.children(recursive=True) if _held(p, port, psutil.CONN_LISTEN)]
    assert len(workers) == 2
    # A listening socket of its own in each worker: what lets the kernel, not a race, share the connections.
    assert len({_listening_socket(worker, port) for worker in workers}) == 2
    connections = [socket.socket() for _ in range(64)]
    for sock in connections:  # all at once, as a pool does: no round trip between two connects
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
    try:
        select.select([], connections, [], 5)
        for sock in connections:
            sock.setblocking(True)
            sock.settimeout(5)
        for sock in connections:
            sock.sendall(request())
        for sock in connections:
            assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200")
        held = [_held(worker, port, psutil.CONN_ESTABLISHED) for worker in workers]
        assert sum(held) == 64
        # Spread by the kernel's hash of each connection's addresses: 32 each on average; under 12 is a 1e-7 chance.
        assert min(held) >= 12, held
    finally:
        for sock in connections:
            sock.close()


@pytest.mark.parametrize("ceiling_server", [2], indirect=True, ids=["2-workers"])
def test_a_second_server_on_the_port_is_refused_not_joined(ceiling_server: tuple[int, psutil.Process]) -> None:
    # SO_REUSEPORT would let a second server's sockets join this one's and take a share of its connections.
    port, _ = ceiling_server
    cmd = [sys.executable, "benchmarks/ceiling_app.py", "--port", str(port), "--workers", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


@pytest.mark.parametrize("ceiling_server", [2], indirect=True, ids=["2-workers"])
def test_a_worker_that_dies_is_replaced_and_no_connection_waits_for_it(
    ceiling_server: tuple[int, psutil.Process],
) -> None:
    port, parent = ceiling_server
    dead = next(p for p in parent.children(recursive=True) if _held(p, port, psutil.CONN_LISTEN))
    dead.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listening = [
            p for p in parent.children(recursive=True) if p.pid != dead.pid and _held(p, port, psutil.CONN_LISTEN)
        ]
        if len(listening) == 2:
            break
        time.sleep(0.2)
    assert len(listening) == 2, "no worker took the dead one's place"
    # Had the dead worker's socket stayed open (in the parent), the kernel would still hash some new
    # connections to it, and they would wait for an accept that never comes.
    for _ in range(32):
        assert exchange(port, request()) == b"HTTP/1.1 200 OK"
