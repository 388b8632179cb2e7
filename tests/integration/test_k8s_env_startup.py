"""Issue 6, acceptance 3: the service started exactly as the Kubernetes Deployment starts it passes
its readiness probe.

The environment is the rendered cpu overlay's (ConfigMap via envFrom, then the container's env),
the arguments are the image's CMD, the registry is a read-only copy of the tiny registry, and the
process runs as an unprivileged user when the test runs as root. Only MNIST_MODEL_DIR (the
volume's mount point) and MNIST_PORT (a free port) are changed.

Like the pod, the service reads nothing of the checkout or of the test's environment: the image's
virtual environment (our packages and the serve extra) and the registry are staged into a folder
that user can read, so the test passes from a checkout anywhere, a private `mktemp -d` clone included.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loadtests.server import free_port
from tests.deploy_helpers import (
    ROOT,
    rendered_server_env,
    service_log,
    service_process,
    stage_serving_image,
    wait_for,
)

NOBODY = 65534


def image_cmd_args() -> list[str]:
    """Arguments after `python -m service` in the serve stage's CMD."""
    text = (ROOT / "Dockerfile").read_text()
    serve = re.search(r"^FROM \S+ AS serve$(.*?)^FROM ", text, re.MULTILINE | re.DOTALL)
    assert serve, "no serve stage in the Dockerfile"
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", serve.group(1), re.MULTILINE)[-1])
    assert cmd[:3] == ["python", "-m", "service"]
    return cmd[3:]


def set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        if writable:
            path.chmod(mode | stat.S_IWUSR)
        else:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) | stat.S_IROTH | stat.S_IRGRP)
        if path.is_dir() and not writable:
            path.chmod(path.stat().st_mode | stat.S_IXOTH | stat.S_IXGRP)


@dataclass(frozen=True)
class Staged:
    """What the pod sees: the image's python, a working directory, the read-only registry volume."""

    python: Path
    home: Path
    registry: Path


@pytest.fixture()
def staged(tiny_registry: Path) -> Iterator[Staged]:
    # Outside pytest's tmp tree: that is private to the current user (0700), and the service may
    # run as another one here, as it does in the pod.
    holder = Path(tempfile.mkdtemp(prefix="mnist-k8s-"))
    holder.chmod(0o755)
    registry = holder / "models"
    shutil.copytree(tiny_registry, registry)
    set_writable(registry, False)
    (holder / "home").mkdir()
    try:
        yield Staged(stage_serving_image(holder / "venv"), holder / "home", registry)
    finally:
        set_writable(registry, True)
        shutil.rmtree(holder, ignore_errors=True)


def user_prefix() -> list[str]:
    """Drop to `nobody` when running as root, like runAsNonRoot in the pod."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv: cannot start the service as a non-root user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def test_service_started_like_the_deployment_becomes_ready(staged: Staged) -> None:
    env = rendered_server_env()
    assert env["MNIST_MODEL_DIR"] == "/models"
    port = free_port()
    env.update({"MNIST_MODEL_DIR": str(staged.registry), "MNIST_PORT": str(port)})
    # What the image provides beyond the Deployment: its venv's interpreter first on PATH, no .pyc writes.
    path = os.pathsep.join([str(staged.python.parent), os.environ["PATH"]])
    env.update({"PATH": path, "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/nonexistent"})
    before = sorted(p.relative_to(staged.registry).as_posix() for p in staged.registry.rglob("*"))

    with service_process(
        env, args=image_cmd_args(), prefix=user_prefix(), cwd=staged.home, python=staged.python
    ) as proc:
        status, body = wait_for(f"http://127.0.0.1:{port}/health/ready", 200, 120, proc)
        assert status == 200, f"readiness answered {status} {body[:300]!r}; log:\n{service_log(proc)}"
        assert json.loads(body)["status"] == "ready"
        live, _ = wait_for(f"http://127.0.0.1:{port}/health/live", 200, 10, proc)
        assert live == 200
        if os.geteuid() == 0:
            uid_line = next(
                line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if line.startswith("Uid:")
            )
            assert uid_line.split()[1] == str(NOBODY), uid_line

    after = sorted(p.relative_to(staged.registry).as_posix() for p in staged.registry.rglob("*"))
    assert after == before, "the service wrote into its read-only registry"
