"""The images tier: the Dockerfile's targets built here with buildah (no Docker daemon) and run.

Each image is built once per session on the stand-in base (tests/images/standin.py). buildah keeps
every layer, so a second session rebuilds only what a changed file touches. Where chroot builds
cannot run the tier is skipped with the reason, except in CI (CI=true), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.images import buildah, standin

ROOT = Path(__file__).resolve().parents[2]
APP_UID = 10001  # the Dockerfile's ARG APP_UID, checked against the Deployment in test_deployment_image.py


@dataclass(frozen=True)
class Built:
    target: str
    tag: str
    seconds: float
    size_mb: float


BUILT: dict[str, Built] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BUILT:
        terminalreporter.section("image sizes (buildah, stand-in debian:bookworm-slim base)")
        for built in BUILT.values():
            terminalreporter.write_line(f"{built.target:<6} {built.size_mb:8.0f} MB   built in {built.seconds:5.1f} s")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Each rebuild leaves the previous image's layers behind, untagged (GBs for train): dangling images,
    # those with no tag and no child, go; the layers the current tags are built from stay cached.
    if BUILT:
        buildah.run(["rmi", "--prune"], timeout=600, check=False)


@pytest.fixture(scope="session")
def base_image() -> str:
    reason = buildah.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the images tier must run in CI: {reason}")
        print(f"\nimages tier skipped: {reason}")
        pytest.skip(reason)
    return standin.ensure()


def build(target: str, base: str, contexts: dict[str, Path] | None = None, builder: str | None = None) -> str:
    """Build ``target``; first its ``builder`` stage (if the target copies from one) under a tag of its own,
    so that the stage's layers (the wheels' install) have a name and survive the prune at the end of the
    session."""
    seconds = 0.0
    if builder:
        seconds += buildah.build(ROOT, builder, f"localhost/mnist-serving:{builder}-cache", {"DEBIAN_IMAGE": base})
    tag = f"localhost/mnist-serving:{target}-test"
    seconds += buildah.build(ROOT, target, tag, {"DEBIAN_IMAGE": base}, contexts)
    BUILT[target] = Built(target, tag, seconds, buildah.size_bytes(tag) / 1e6)
    return tag


@pytest.fixture(scope="session")
def serve_image(base_image: str) -> str:
    return build("serve", base_image, builder="build-serve")


# Built in sequence: a background train build overlapping the serve build and tests was measured no faster
# cold on two shared cores (11 min 27 s against 11 min 03 s), and is simpler this way.
@pytest.fixture(scope="session")
def train_image(base_image: str) -> str:
    return build("train", base_image)


@pytest.fixture(scope="session")
def baked_image(base_image: str, tiny_registry: Path) -> str:
    return build("baked", base_image, {"models": tiny_registry})


def share(root: Path, owner: int | None = None) -> None:
    """Make a registry readable by every user (and owned by ``owner``, like a volume with fsGroup)."""
    for path in [root, *root.rglob("*")]:
        if owner is not None:
            os.chown(path, owner, owner)
        extra = stat.S_IRGRP | stat.S_IROTH | (stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0)
        path.chmod(path.stat().st_mode | extra)


@pytest.fixture()
def volume(tiny_registry: Path, tmp_path: Path) -> Path:
    """A copy of the tiny registry that the image's user can read (and, as root here, owns: the Deployment's
    fsGroup). Its parent stays private: a bind mount does not need the container's user to reach it."""
    registry = tmp_path / "models"
    shutil.copytree(tiny_registry, registry)
    share(registry, APP_UID if os.geteuid() == 0 else None)
    return registry
