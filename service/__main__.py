"""``python -m service [--host H] [--port P] [--workers N]``: validate settings, then run uvicorn.

``python -m service predict FILE...`` predicts on local files without a server (``service.predict_cli``).

Flags override the matching MNIST_ variables. A bad setting exits with code 2
and a message naming the variable, never a traceback. This module imports
neither TensorFlow nor the metrics module before the multiprocess directory is
chosen, since prometheus_client reads PROMETHEUS_MULTIPROC_DIR at import.
"""

from __future__ import annotations

import os

# Before numpy is imported anywhere (workers inherit the environment): OpenBLAS/OpenMP start one thread
# per core by default, and on this 2-core box their spinning threads fight the event loop and the model
# thread; a 32-image PCA matmul took 40 ms instead of 0.2 ms under load. Serving matmuls are tiny.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402 (the thread limits above must come first)
import importlib.util  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from service.settings import Settings, describe_validation_error, unknown_variables  # noqa: E402

# A request head (line + headers) larger than this is refused by the HTTP parser before our code runs.
MAX_REQUEST_HEAD_BYTES = 16 * 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m service", description="Serve MNIST digit predictions.")
    parser.add_argument("--host", help="bind address (MNIST_HOST)")
    parser.add_argument("--port", help="bind port (MNIST_PORT)")
    parser.add_argument("--workers", help="uvicorn worker processes (MNIST_WORKERS)")
    return parser.parse_args(argv)


def load_or_exit(args: argparse.Namespace) -> Settings:
    # Through the environment, so every worker process builds the same Settings.
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"MNIST_{name.upper()}"] = str(value)
    try:
        return Settings()
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        raise SystemExit(2) from None


def check_device_or_exit(settings: Settings) -> None:
    """Fail fast on MNIST_DEVICE=cuda without a GPU, before the server starts (ONNX backend only:
    asking TensorFlow would import it)."""
    if settings.backend != "onnx":
        return
    import onnxruntime

    from service.errors import DeviceUnavailable
    from service.inference.backends.devices import select_providers

    try:
        select_providers(settings.device, onnxruntime.get_available_providers())
    except DeviceUnavailable as exc:
        print(f"MNIST_DEVICE: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def predict(argv: list[str] | None = None) -> int:
    """The ``mnist-predict`` console script, after this module's thread limits."""
    from service.predict_cli import main as predict_main

    return predict_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:
        return predict(argv[1:])
    settings = load_or_exit(parse_args(argv))
    check_device_or_exit(settings)
    if settings.grpc_port:
        from service.workers import claim_port

        # grpc core binds with SO_REUSEPORT: on a port another gRPC server holds (a second instance, Triton) it
        # would start without a word and share the callers with it. Claimed once, here, the workers' servers
        # still share it with each other.
        claim_port(settings.host, settings.grpc_port, "MNIST_GRPC_PORT")
    own_metrics_dir = None
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given and not (os.path.isdir(given) and os.access(given, os.W_OK)):  # each worker would crash on its metrics
        print(f"PROMETHEUS_MULTIPROC_DIR: {given!r} must be a folder this user can write", file=sys.stderr)
        raise SystemExit(2)
    if given:
        # prometheus_client's rule for this folder: wiped before the workers start. A previous run's files (one that
        # was killed leaves them) stay in every sum, its workers in flight and serving their version for ever.
        # Every *.db there is read as one of its files: the folder is the service's alone.
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
    if settings.workers > 1 and not given:
        own_metrics_dir = tempfile.mkdtemp(prefix="mnist-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir

    from service.logging_setup import configure_logging

    configure_logging(settings.log_level)
    for line in unknown_variables(os.environ):
        logging.getLogger("service").warning(line)
    try:
        serve("service.app:create_app", settings, factory=True, log_level=settings.log_level)
    finally:
        if own_metrics_dir:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
    return 0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The server settings, shared with the benchmark's ceiling app so both run under the same server."""
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": settings.timeout_keep_alive_s,
        "limit_concurrency": settings.limit_concurrency,
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
        "server_header": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        "http": http_protocol(),
        # uvloop when installed (uvicorn[standard]), else asyncio.
        "loop": "auto",
    }


def http_protocol() -> str:
    """httptools when installed (C: far cheaper per request than pure-Python h11), with the head cap
    uvicorn applies only to h11."""
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    return "service.api.http_protocol:HeadCappedHttpToolsProtocol"


def serve(app: str, settings: Settings, **overrides: Any) -> None:
    """``uvicorn.run`` with our options; several workers each get a listening socket of their own (service.workers)."""
    import uvicorn

    config = uvicorn.Config(app, **{**uvicorn_options(settings), **overrides})
    if config.workers > 1:
        from service.workers import run_workers

        status = run_workers(config)
        if status:
            raise SystemExit(status)
        return
    # One process: uvicorn binds through loop.create_server, whose sockets already get TCP_NODELAY.
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn.run's STARTUP_FAILURE; the reason is in the log


if __name__ == "__main__":
    sys.exit(main())
