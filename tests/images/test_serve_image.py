"""The serve image, started as the Kubernetes Deployment starts it (its env, the registry mounted
read-only at /models, a tmpfs /tmp), checked for what the cluster relies on: the user it runs as, its
probes, a right answer on /predict, a HEALTHCHECK that passes, and no write outside its mounts."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.server import free_port
from tests.deploy_helpers import http_get, rendered_server, wait_for
from tests.images import buildah
from tests.images.conftest import share
from tests.images.running import Running, assert_right_digits, predictions, root_writes, serving

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def deployment() -> tuple[dict[str, Any], dict[str, Any]]:
    return rendered_server("cpu")


@pytest.fixture(scope="module")
def started(
    serve_image: str, tiny_registry: Path, deployment: tuple[dict[str, Any], dict[str, Any]], tmp_path_factory
) -> Iterator[tuple[Running, Path, float, dict[str, float]]]:
    """One serve container for the module: the Deployment's env, the registry read-only at /models."""
    registry = tmp_path_factory.mktemp("volume") / "models"
    shutil.copytree(tiny_registry, registry)
    share(registry)
    _, container = deployment
    since = time.time()
    timings: dict[str, float] = {}
    with serving(serve_image, container["resolvedEnv"], [f"{registry}:/models:ro"], timings=timings) as running:
        yield running, registry, since, timings


def test_serve_answers_predict_with_the_right_digits(started) -> None:
    running, *_ = started
    assert_right_digits(running.url)
    status, body = http_get(f"{running.url}/health/ready")
    assert status == 200 and json.loads(body)["model_version"] == 1


def test_healthcheck_passes_inside_the_container_and_fails_without_a_server(serve_image: str, started) -> None:
    running, *_ = started
    test = buildah.docker_healthcheck(serve_image)
    assert test and test[0] == "CMD", test
    passed = running.exec(test[1:])
    assert passed.returncode == 0, passed.stdout + passed.stderr
    nobody_there = running.exec(test[1:], env={"MNIST_PORT": str(free_port())})
    assert nobody_there.returncode != 0, "the HEALTHCHECK passes with no server: it checks nothing"


def test_probes_answer_within_the_deployments_limits(started, deployment) -> None:
    running, _, _, timings = started
    _, container = deployment
    startup = container["startupProbe"]
    assert timings["live"] <= startup["periodSeconds"] * startup["failureThreshold"], timings
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        spec = container[probe]
        assert spec["httpGet"]["port"] in {"http", container["ports"][0]["containerPort"]}
        start = time.monotonic()
        status, _ = wait_for(f"{running.url}{spec['httpGet']['path']}", 200, 1)
        elapsed = time.monotonic() - start
        assert status == 200 and elapsed <= spec.get("timeoutSeconds", 1), (probe, status, elapsed)


def test_process_has_the_deployments_security_context(started, deployment) -> None:
    running, registry, since, _ = started
    _, container = deployment
    context = container["securityContext"]
    status = dict(line.split(":", 1) for line in Path(f"/proc/{running.service_pid()}/status").read_text().splitlines())
    uids, gids = status["Uid"].split(), status["Gid"].split()
    assert set(uids) == {str(context["runAsUser"])} and set(gids) == {str(context["runAsGroup"])}, (uids, gids)
    assert context["capabilities"]["drop"] == ["ALL"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status["CapEff"]
    # readOnlyRootFilesystem: after answering requests, nothing was written outside /tmp and the mounts.
    predictions(running.url, count=2)
    assert context["readOnlyRootFilesystem"] is True
    assert root_writes(running.container, since) == []
    assert not any(path.stat().st_mtime > since for path in registry.rglob("*")), "the registry was written"
