"""What each image carries and declares, against the Dockerfile's promises and the Deployment's spec:
the non-root user, no TensorFlow, compiler or test tool in what serves, the env the Deployment also
sets, and a baked image that serves with nothing mounted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy_helpers import http_get, rendered_server
from tests.images import buildah
from tests.images.conftest import APP_UID
from tests.images.running import assert_right_digits, inside, serving

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("target", ["serve", "baked"])
def test_serving_images_run_as_the_app_user_without_tensorflow_compilers_or_test_tools(
    target: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(f"{target}_image")
    found = inside(image)
    assert (found["uid"], found["gid"]) == (APP_UID, APP_UID)
    assert found["modules"] == [] and found["tools"] == [], found


def test_image_declares_what_the_deployment_expects(serve_image: str) -> None:
    config = buildah.inspect(serve_image)
    pod, container = rendered_server("cpu")
    image_env = dict(item.split("=", 1) for item in config["Env"])
    # Where both set a setting they agree: the image alone (docker run) and the pod behave alike.
    shared = {k for k in image_env if k.startswith("MNIST_") and k in container["resolvedEnv"]}
    assert shared >= {"MNIST_MODEL_DIR", "MNIST_PORT"}
    assert {k: image_env[k] for k in shared} == {k: container["resolvedEnv"][k] for k in shared}
    assert set(config["ExposedPorts"]) == {f"{container['ports'][0]['containerPort']}/tcp"}
    context = container["securityContext"]
    assert config["User"] == f"{context['runAsUser']}:{context['runAsGroup']}" == f"{APP_UID}:{APP_UID}"
    assert pod["securityContext"]["fsGroup"] == APP_UID, "training's files must be readable by the serve user"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == image_env["MNIST_MODEL_DIR"])
    assert mount["readOnly"] is True


def test_baked_image_serves_its_registry_with_nothing_mounted(baked_image: str, tiny_registry: Path) -> None:
    _, container = rendered_server("cpu")
    with serving(baked_image, container["resolvedEnv"]) as running:
        status, body = http_get(f"{running.url}/models")
        assert status == 200, body
        assert_right_digits(running.url)
        status, body = http_get(f"{running.url}/health/ready")
        production = json.loads((tiny_registry / "mnist" / "aliases.json").read_text())["aliases"]["production"]
        assert json.loads(body)["model_version"] == production
