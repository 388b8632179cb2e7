"""``python -m service [--host H] [--port P] [--workers N]``: validate settings, then run uvicorn.

Flags override the matching MNIST_ variables. A bad setting exits with code 2
and a message naming the variable, never a traceback. This module imports
neither TensorFlow nor the metrics module before the multiprocess directory is
chosen, since prometheus_client reads PROMETHEUS_MULTIPROC_DIR at import.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from pydantic import ValidationError

from service.settings import Settings, describe_validation_error

# A request head (line + headers) larger than this is refused by h11 before our code runs.
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

    from service.backends.devices import select_providers
    from service.errors import DeviceUnavailable

    try:
        select_providers(settings.device, onnxruntime.get_available_providers())
    except DeviceUnavailable as exc:
        print(f"MNIST_DEVICE: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    settings = load_or_exit(parse_args(argv))
    check_device_or_exit(settings)
    own_metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_metrics_dir = tempfile.mkdtemp(prefix="mnist-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir

    import uvicorn

    from service.logging_setup import configure_logging

    configure_logging(settings.log_level)
    try:
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            log_level=settings.log_level,
            access_log=False,
            timeout_keep_alive=settings.timeout_keep_alive_s,
            limit_concurrency=settings.limit_concurrency,
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
            server_header=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    finally:
        if own_metrics_dir:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
