"""The train image run as the training CronJob runs it (its env and args, the registry volume mounted
read-write, a tmpfs /tmp) publishes a new version, and a serve container reading the same volume
read-only hot-swaps to it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from registry.aliases import read_state
from tests.deploy_helpers import http_get, rendered_cronjob, rendered_server_env
from tests.images import buildah
from tests.images.conftest import APP_UID
from tests.images.running import assert_right_digits, inside, serving, wait_until

pytestmark = pytest.mark.timeout(900)


def train(image: str, volume: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """The image's ENTRYPOINT with the CronJob's env, `args` instead of its CMD, as the image's user."""
    job = rendered_cronjob("mnist-train")
    env = {item["name"]: item["value"] for item in job.get("env", [])}
    config = buildah.inspect(image)
    with buildah.container(image) as name:
        command = [*config["Entrypoint"], *args]
        return subprocess.run(
            buildah.run_args(name, command, env=env, volumes=[f"{volume}:/models"], tmpfs=["/tmp"]),
            capture_output=True,
            text=True,
            timeout=900,
        )


def ready_version(url: str) -> Any:
    status, body = http_get(f"{url}/health/ready")
    return json.loads(body).get("model_version") if status == 200 else None


def test_train_quick_publishes_a_version_that_serve_hot_swaps_to(
    train_image: str, serve_image: str, volume: Path
) -> None:
    job = rendered_cronjob("mnist-train")
    env = rendered_server_env()
    with serving(serve_image, env, [f"{volume}:/models:ro"]) as running:
        assert ready_version(running.url) == 1
        result = train(train_image, volume, [*job["args"], "--quick"])
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        published = volume / "mnist" / "2"
        assert (published / "metadata.json").is_file() and (published / "model.onnx").is_file()
        assert published.stat().st_uid == APP_UID, "written by another user than the image's"
        if read_state(volume / "mnist" / "aliases.json")["aliases"].get("production") != 2:
            # A quick model replaces production only when at least as accurate; promoting it is the
            # operator's step, run here through the same image.
            promoted = train(train_image, volume, ["registry", "--registry", "/models", "promote", "2"])
            assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        poll = float(env["MNIST_POLL_INTERVAL_S"])
        assert wait_until(lambda: ready_version(running.url) == 2, 3 * poll + 10), running.log()
        assert_right_digits(running.url)


def test_train_image_runs_as_the_app_user_with_tensorflow(train_image: str) -> None:
    found = inside(train_image)
    assert (found["uid"], found["gid"]) == (APP_UID, APP_UID)
    assert "tensorflow" in found["modules"] and "pytest" not in found["modules"], found
