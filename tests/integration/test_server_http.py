"""The server layer ``python -m service`` runs under (service.__main__.serve), exercised on the benchmark's
bare ASGI app so no model is needed: the request-head cap holds with whichever HTTP parser is in use, and
several workers answer without the 40 ms delayed-ACK stall a socket without TCP_NODELAY causes."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from benchmarks.loadgen import run, run_cell
from loadtests.server import free_port, launch, terminate, wait_ready

BODY = b'{"image":[' + b",".join([b"[" + b",".join([b"0"] * 28) + b"]"] * 28) + b"]}"


def request(head_extra: bytes = b"") -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: t\r\n%bContent-Length: %d\r\n\r\n%b" % (head_extra, len(BODY), BODY)


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def ceiling(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    cmd = [sys.executable, "benchmarks/ceiling_app.py", "--port", str(port), "--workers", str(request.param)]
    proc = launch(cmd, dict(os.environ), tmp_path_factory.mktemp("ceiling") / "ceiling.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, timeout_s=30, paths=["/health/ready"])  # its one health path
        yield port
    finally:
        terminate(proc)


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
