"""Headless Locust run with a pass/fail budget: ``make loadtest``.

Against ``--host URL`` when given; otherwise starts the service itself on a free
loopback port with ``MNIST_MODEL_DIR=--models``, waits for /health/ready and
stops it afterwards. Writes Locust's CSV and HTML reports under
``--reports-dir`` and exits 1 when the failure ratio or the aggregated p99 is
over budget (2 when there is nothing to test: an empty registry). The budget
is judged inside Locust at quit (see the locustfile) on its final figures.

Locust runs as a child process: it monkey-patches the standard library with
gevent, which must not leak into the code that manages the service process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo root: loadtests.server and registry import from anywhere
from loadtests import server  # noqa: E402

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
READY_TIMEOUT_S = 120.0
_TIMESPAN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


def parse_duration(text: str) -> int:
    """Locust's ``-t`` syntax (``90``, ``60s``, ``1m30s``, ``1h``) in seconds."""
    match = _TIMESPAN.match(text.strip())
    if not text.strip() or not match:
        raise argparse.ArgumentTypeError(f"duration {text!r}: use seconds or e.g. 60s, 1m30s")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return total


def registry_is_empty(models: Path) -> bool:
    from registry import Registry  # the registry module owns the layout; no paths built here

    return not Registry(models).versions()


@contextlib.contextmanager
def service(models: Path, log_path: Path) -> Iterator[str]:
    """``python -m service`` on a free loopback port; yields its base URL once ready and stops it afterwards."""
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MNIST_MODEL_DIR": str(models.resolve())}
    with server.running(server.service_command(port), url, env, log_path, READY_TIMEOUT_S):
        yield url


def run_locust(args: argparse.Namespace, host: str, prefix: Path, verdict_file: Path) -> int:
    """Locust headless; its exit code is the verdict (set by the locustfile's quitting hook from these budgets)."""
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.duration}s",
        "--host", host, "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
        "--stop-timeout", "10",
    ]  # fmt: skip
    env = {
        **os.environ,
        "LOADTEST_P99_MS": str(args.p99_ms),
        "LOADTEST_FAIL_RATIO": str(args.fail_ratio),
        "LOADTEST_VERDICT_FILE": str(verdict_file),
    }
    return subprocess.run(cmd, cwd=ROOT, env=env, timeout=args.duration + 120, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"), help="registry root (when starting the service)")
    parser.add_argument("--host", help="base URL of a running service; default: start one")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--spawn-rate", type=float, default=16)
    parser.add_argument("--duration", type=parse_duration, default="60s", help="e.g. 60s, 2m")
    parser.add_argument("--p99-ms", type=float, default=250.0, help="budget for aggregated p99 latency")
    parser.add_argument("--fail-ratio", type=float, default=0.001, help="budget for failed/total requests")
    parser.add_argument("--reports-dir", type=Path, default=ROOT / "loadtests" / "reports")
    args = parser.parse_args(argv)

    args.reports_dir.mkdir(parents=True, exist_ok=True)
    prefix = args.reports_dir / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    verdict_file = prefix.with_name(prefix.name + "_verdict.txt")

    if not args.host and registry_is_empty(args.models):
        print(f"Registry {args.models} has no model version: run `make train` first.", file=sys.stderr)
        return 2
    try:
        if args.host:
            server.wait_ready(args.host.rstrip("/"), None, timeout_s=10)
            locust_rc = run_locust(args, args.host.rstrip("/"), prefix, verdict_file)
        else:
            log_path = prefix.with_name(prefix.name + "-service.log")
            with service(args.models, log_path) as host:
                print(f"service ready at {host} (log: {log_path})", flush=True)
                locust_rc = run_locust(args, host, prefix, verdict_file)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"LOADTEST FAIL: {exc}", file=sys.stderr)
        return 1

    if not verdict_file.exists():
        print(f"LOADTEST FAIL: Locust exited with code {locust_rc} before judging the run", file=sys.stderr)
        return 1
    # Printed last, after Locust's tables, so the verdict is the line people see.
    print(verdict_file.read_text().strip())
    print(f"reports: {prefix}.html and {prefix.name}_*.csv in {args.reports_dir}")
    return 0 if locust_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
