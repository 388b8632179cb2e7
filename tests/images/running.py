"""A container of a built image, run the way a cluster runs it: the image's own user, command and
environment, plus what the test gives (the Deployment's env, volumes, a tmpfs /tmp).

Under chroot isolation the container shares the host's network, so the service listens on a free
loopback port: only the `--host` value of the image's CMD and MNIST_PORT are changed, never the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtests.server import free_port, launch, terminate
from tests.deploy_helpers import wait_for
from tests.helpers import real_digits, to_png
from tests.images import buildah

# Outside the root filesystem, like the pod's mounts: writes there are allowed, anywhere else they are not.
MOUNT_POINTS = ("/tmp", "/models", "/proc", "/dev", "/sys", "/run", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname")


@dataclass
class Running:
    """A service running in ``container``: its URL, the `buildah run` process and its log."""

    container: str
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def service_pid(self) -> int:
        """The service's own process (the image's python), found among the `buildah run` process's children."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if child.name().startswith("python"):
                return child.pid
        raise AssertionError(f"no python process under buildah run; log:\n{self.log()}")

    def exec(self, command: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``command`` in the same container, next to the service (shared filesystem and network)."""
        return buildah.exec_in(self.container, command, env={"MNIST_PORT": str(self.port), **(env or {})})


def loopback_cmd(cmd: list[str]) -> list[str]:
    """The image's CMD with its `--host` value set to loopback (the only argument a test changes)."""
    assert "--host" in cmd, f"the image's CMD names no --host: {cmd}"
    at = cmd.index("--host") + 1
    return [*cmd[:at], "127.0.0.1", *cmd[at + 1 :]]


@contextlib.contextmanager
def serving(
    image: str,
    env: dict[str, str],
    volumes: Sequence[str] = (),
    ready_within_s: float = 90,
    timings: dict[str, float] | None = None,
) -> Iterator[Running]:
    """The image's CMD in a new container of ``image``, live and ready (or the test fails with its log);
    ``timings`` receives the seconds from start to live and to ready."""
    config = buildah.inspect(image)
    command = loopback_cmd([*(config.get("Entrypoint") or []), *config["Cmd"]])
    port = free_port()
    with buildah.container(image) as name:
        log_path = Path(tempfile.mkstemp(prefix="mnist-image-", suffix=".log")[1])
        args = buildah.run_args(name, command, env={**env, "MNIST_PORT": str(port)}, volumes=volumes, tmpfs=["/tmp"])
        start = time.monotonic()
        process = launch(args, dict(os.environ), log_path)
        running = Running(name, f"http://127.0.0.1:{port}", port, process, log_path)
        try:
            for probe in ("live", "ready"):
                status, body = wait_for(f"{running.url}/health/{probe}", 200, ready_within_s, process)
                assert status == 200, f"{image} not {probe}: {status} {body[:300]!r}; log:\n{running.log()}"
                (timings if timings is not None else {})[probe] = time.monotonic() - start
            yield running
        finally:
            terminate(process, timeout_s=20)
            log_path.unlink(missing_ok=True)


def root_writes(container: str, since: float) -> list[str]:
    """Paths of the container's root filesystem changed after ``since`` (outside its mounts): what a
    read-only root filesystem (the Deployment's readOnlyRootFilesystem) would have refused."""
    mountpoint = Path(buildah.run(["mount", container]).stdout.strip())
    changed = []
    for directory, subdirs, files in os.walk(mountpoint):
        relative = "/" + os.path.relpath(directory, mountpoint).removeprefix(".").lstrip("/")
        subdirs[:] = [d for d in subdirs if f"{relative.rstrip('/')}/{d}" not in MOUNT_POINTS]
        for entry in [*subdirs, *files]:
            path = f"{relative.rstrip('/')}/{entry}"
            with contextlib.suppress(FileNotFoundError):
                if path not in MOUNT_POINTS and os.lstat(Path(directory) / entry).st_mtime > since:
                    changed.append(path)
    return changed


def predictions(url: str, count: int = 10) -> list[tuple[int | str, int]]:
    """(digit, or the error code of a refusal, label) for ``count`` real MNIST digits sent as PNG to /predict."""
    answers: list[tuple[int | str, int]] = []
    images, labels = real_digits(count)
    for image, label in zip(images, labels, strict=True):
        request = urllib.request.Request(
            f"{url}/predict", data=to_png(image), headers={"Content-Type": "image/png"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append((int(json.loads(response.read())["digit"]), int(label)))
        except urllib.error.HTTPError as exc:
            assert exc.code == 422, f"/predict answered {exc.code}"  # the guards' refusal; anything else fails
            answers.append((json.loads(exc.read())["error"]["code"], int(label)))
    return answers


def assert_right_digits(url: str) -> None:
    """Ten real digits, one of each class: the quick model (95 % on its test digits) answers at least eight
    right; the guards may refuse a rare real digit (as in tests/integration/test_api_predict.py)."""
    answers = predictions(url)
    assert sum(answer == label for answer, label in answers) >= 8, f"(answer, label): {answers}"


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


# Run inside the image: who it runs as, and which of the things a serving image must not carry it has.
PROBE = """
import importlib.util, json, os, shutil
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "modules": [m for m in ("tensorflow", "keras", "tf2onnx", "pytest", "hypothesis", "locust")
                if importlib.util.find_spec(m)],
    "tools": [t for t in ("gcc", "cc", "g++", "make", "curl", "wget") if shutil.which(t)],
}))
"""


def inside(image: str) -> dict:
    with buildah.container(image) as name:
        result = buildah.exec_in(name, ["python", "-c", PROBE])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
