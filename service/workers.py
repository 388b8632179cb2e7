"""Several uvicorn workers on one port, each listening on a socket of its own (``SO_REUSEPORT``).

uvicorn's own multi-worker mode hands every worker one shared socket, and the event loop that wakes
for it accepts every connection waiting: 64 keep-alive connections opened together went 64 / 0 or
45 / 19 to two workers, and the throughput followed (benchmarks/README.md). With a socket per worker
the kernel spreads new connections over the sockets by their addresses. This parent only starts the
workers, replaces one that dies and stops them all on SIGINT, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from multiprocessing.process import BaseProcess

import uvicorn
from prometheus_client import multiprocess

log = logging.getLogger("service")

# uvicorn.config.STARTUP_FAILURE, and a configuration error found as the model loads (service.app): a worker that
# exits so would fail again on every restart.
STARTUP_FAILURE = 3
CONFIG_ERROR = 2
# More deaths than this within the window is a worker that cannot stay up (a crash at each start): stop, as a
# supervisor's start limit does, instead of restarting it for ever.
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0
WATCH_INTERVAL_S = 0.5
STOP_GRACE_S = 5.0


def listening_socket(
    host: str, port: int, *, reuse_port: bool, names: str = "MNIST_HOST / MNIST_PORT"
) -> socket.socket:
    """A bound TCP socket, created with IPPROTO_TCP spelled out.

    asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and ``socket(AF_INET)`` leaves
    it 0: every response would then wait for the client's delayed ACK (+40 ms each on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        print(f"cannot listen on {host}:{port}: {exc.strerror} ({names})", file=sys.stderr)
        raise SystemExit(1) from None
    return sock


def claim_port(host: str, port: int, names: str = "MNIST_HOST / MNIST_PORT") -> int:
    """The port to serve on (the one the system picks for 0), once nothing else listens there.

    A socket without SO_REUSEPORT cannot share a port with any other, so this bind fails while another
    server (a second ``make serve``) holds it; the workers' sockets would silently join its group. So
    would gRPC's, which grpc core binds with SO_REUSEPORT: its port is claimed here too (``__main__``).
    """
    with listening_socket(host, port, reuse_port=False, names=names) as probe:
        return int(probe.getsockname()[1])


def _serve(config: uvicorn.Config, sock: socket.socket) -> None:
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # the reason is in the log


def _start(config: uvicorn.Config, port: int) -> BaseProcess:
    sock = listening_socket(config.host, port, reuse_port=True)
    # Listening from now on, the socket takes its share of new connections while the worker starts: they
    # wait in its backlog for a second or two instead of all landing on the workers already up.
    sock.listen(config.backlog)
    try:
        worker = multiprocessing.get_context("spawn").Process(target=_serve, args=(config, sock), name="mnist-worker")
        worker.start()  # spawn duplicates the socket into the worker here
    finally:
        # The parent's copy would keep the socket in the port's group after its worker died, and the
        # connections the kernel sends it would wait for ever.
        sock.close()
    return worker


def run_workers(config: uvicorn.Config) -> int:
    """Serve ``config.workers`` workers until SIGINT, SIGTERM or SIGHUP; 3 (or 2, a configuration error) when one
    could not start, 1 when they keep dying."""
    port = claim_port(config.host, config.port)
    stop = threading.Event()
    # SIGHUP too: killed by it, this parent would leave its workers holding the port.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    workers = [_start(config, port) for _ in range(config.workers)]
    log.info("workers started", extra={"workers": [w.pid for w in workers], "port": port})
    status = 0
    deaths: deque[float] = deque(maxlen=RESTART_LIMIT + 1)
    try:
        while not stop.wait(WATCH_INTERVAL_S):
            for i, worker in enumerate(workers):
                if worker.is_alive():
                    continue
                deaths.append(time.monotonic())
                if worker.exitcode in (STARTUP_FAILURE, CONFIG_ERROR):
                    log.error("a worker could not start; stopping", extra={"pid": worker.pid})
                    status = worker.exitcode
                    stop.set()
                    break
                if len(deaths) > RESTART_LIMIT and deaths[-1] - deaths[0] < RESTART_WINDOW_S:
                    log.error(
                        "workers keep dying; stopping", extra={"deaths": len(deaths), "within_s": RESTART_WINDOW_S}
                    )
                    status = 1
                    stop.set()
                    break
                log.warning("worker died; starting another", extra={"pid": worker.pid, "exit": worker.exitcode})
                if worker.pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                    # What a worker's own exit does (metrics.forget_live_gauges), for one that could not: else its
                    # in-flight count and model info stay in the sums /metrics reports for ever.
                    multiprocess.mark_process_dead(worker.pid)
                workers[i] = _start(config, port)
    finally:
        for worker in workers:
            worker.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for worker in workers:
            worker.join((config.timeout_graceful_shutdown or 0) + STOP_GRACE_S)
            if worker.is_alive():
                worker.kill()
                worker.join()
    return status
