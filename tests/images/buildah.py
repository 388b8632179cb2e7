"""buildah, driven from the tests: builds without a Docker daemon, containers run with chroot isolation.

``podman run`` fails on this kind of machine (it cannot set rlimits); ``buildah run --isolation chroot``
runs the image's filesystem, user, environment and working directory on the host's network, which is
enough for a service that the tests reach on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ISOLATION = ["--isolation", "chroot"]
# The index is reached through the host's CA bundle (a proxy may re-sign TLS): the Dockerfile's pip steps
# mount the optional secret `ca-bundle` over the image's own bundle.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class BuildahError(RuntimeError):
    """A buildah command failed; the message carries its command line and the tail of its output."""


def run(args: Sequence[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise BuildahError(
            f"buildah {' '.join(args)} -> {result.returncode}\n{(result.stdout + result.stderr)[-4000:]}"
        )
    return result


def unavailable_reason() -> str | None:
    """Why chroot builds cannot run on this machine, found by trying one; None when they can."""
    if not shutil_which("buildah"):
        return "buildah is not installed (`make system-deps` installs Debian's buildah and debootstrap)"
    if not shutil_which("debootstrap"):
        return "debootstrap is not installed (`make system-deps`)"
    try:
        container = run(["from", "scratch"], timeout=60).stdout.strip()
        try:
            run(["mount", container], timeout=60)
        finally:
            run(["rm", container], timeout=60, check=False)
    except (BuildahError, OSError, subprocess.TimeoutExpired) as exc:
        return f"buildah cannot mount a container filesystem here (chroot builds need root or user namespaces): {exc}"
    return None


def shutil_which(name: str) -> str | None:
    """``shutil.which`` that also looks in /usr/sbin (debootstrap's home, off a non-root user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def image_exists(name: str) -> bool:
    return run(["inspect", "--type", "image", name], check=False).returncode == 0


def import_rootfs(rootfs: Path, name: str, config: Sequence[str]) -> None:
    """A filesystem tree made into an image (what ``docker import`` does)."""
    container = run(["from", "scratch"]).stdout.strip()
    try:
        mountpoint = run(["mount", container]).stdout.strip()
        subprocess.run(["cp", "-a", f"{rootfs}/.", mountpoint], check=True, timeout=300)
        run(["config", *config, container])
        run(["commit", "--quiet", container, name], timeout=300)
    finally:
        run(["rm", container], check=False)


def build(
    context: Path, target: str, tag: str, build_args: dict[str, str], contexts: dict[str, Path] | None = None
) -> float:
    """``buildah bud --target``; the seconds it took. Layers are kept, so an unchanged step is not run again."""
    args = ["bud", *ISOLATION, "--format", "docker", "--layers", "--pull=missing", "--target", target, "--tag", tag]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    for key, path in (contexts or {}).items():
        args += ["--build-context", f"{key}={path}"]
    args += ["--secret", f"id=ca-bundle,src={CA_BUNDLE}", str(context)]
    start = time.monotonic()
    run(args, timeout=900)
    return time.monotonic() - start


def inspect(image: str) -> dict[str, Any]:
    """The image's OCI config (User, Env, Cmd, Entrypoint, ExposedPorts, WorkingDir)."""
    data = json.loads(run(["inspect", "--type", "image", image]).stdout)
    return data["OCIv1"]["config"]


def docker_healthcheck(image: str) -> list[str] | None:
    """The HEALTHCHECK test command (Docker-format metadata, which buildah keeps beside the OCI config)."""
    data = json.loads(run(["inspect", "--type", "image", image]).stdout)
    check = (data.get("Docker", {}).get("config") or {}).get("Healthcheck")
    return check["Test"] if check else None


UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def size_bytes(image: str) -> int:
    """What the image takes unpacked, the sum of its layers (what `docker images` shows), to 3-4 digits:
    buildah prints it rounded, as "522 MB"."""
    for entry in json.loads(run(["images", "--json", image]).stdout):
        number, unit = entry["size"].split()
        return int(float(number) * UNITS[unit])
    raise BuildahError(f"no image {image}")


@contextlib.contextmanager
def container(image: str) -> Iterator[str]:
    """A working container of ``image``, removed afterwards (its writable layer with it)."""
    name = run(["from", "--pull-never", "--quiet", image]).stdout.strip()
    try:
        yield name
    finally:
        run(["rm", name], check=False)


def run_args(
    name: str,
    command: Sequence[str],
    env: dict[str, str] | None = None,
    volumes: Sequence[str] = (),
    tmpfs: Sequence[str] = (),
    user: str | None = None,
) -> list[str]:
    """The `buildah run` command line for ``command`` in container ``name``, as the image's user."""
    args = ["buildah", "run", *ISOLATION, "--cap-drop", "ALL"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    for volume in volumes:
        args += ["--volume", volume]
    for target in tmpfs:
        args += ["--mount", f"type=tmpfs,destination={target}"]
    if user:
        args += ["--user", user]
    return [*args, name, "--", *command]


def exec_in(name: str, command: Sequence[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to completion inside container ``name``."""
    env = {**os.environ}
    return subprocess.run(run_args(name, command, **kwargs), capture_output=True, text=True, timeout=timeout, env=env)
