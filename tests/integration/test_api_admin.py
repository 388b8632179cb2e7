"""Admin endpoints: present only with a token, 401/403 without the right one, and logged."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry import Registry
from tests.helpers import publish_copy

TOKEN = "integration-admin-token-0123456789"


def test_admin_routes_absent_without_a_token(served) -> None:
    response = httpx.post(served.base_url + "/admin/reload")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_admin_auth_reload_promote_rollback(start_server, registry_copy) -> None:
    server = start_server({"MNIST_ADMIN_TOKEN": TOKEN, "MNIST_POLL_INTERVAL_S": "0"}, registry=registry_copy)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        missing = client.post("/admin/reload")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = client.post("/admin/reload", headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        reload = client.post("/admin/reload", headers=auth)
        assert reload.status_code == 200, reload.text
        version = reload.json()["model_version"]
        promote = client.post("/admin/promote", headers=auth, json={"version": version, "alias": "staging"})
        assert promote.status_code == 200, promote.text
        assert client.get("/models").json()["aliases"].get("staging") == version
        unknown = client.post("/admin/promote", headers=auth, json={"version": 999, "alias": "production"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "version_not_found"
        missing_version = client.post("/admin/reload", headers=auth, json={"version": 999})
        assert missing_version.status_code == 404 and missing_version.json()["error"]["code"] == "version_not_found"
        nothing = client.post("/admin/rollback", headers=auth, json={"alias": "staging"})
        assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "alias_error"
    logs = server.logs()
    assert '"admin reload"' in logs and '"admin promote"' in logs and '"admin refused: wrong token"' in logs
    assert TOKEN not in logs


def test_a_version_this_service_cannot_load_is_never_promoted_nor_rolled_back_to(start_server, registry_copy) -> None:
    """Its checksums match (damaged before it was published): the registry alone cannot tell. Promoting it, or
    rolling back onto it, answered 500 after the alias had moved, and every replica then refused it."""
    registry = Registry(registry_copy)
    good = registry.resolve(None)
    registry.promote(good, reason="the one serving")
    damaged = publish_copy(registry_copy, good, onnx=b"not an onnx model")
    server = start_server({"MNIST_ADMIN_TOKEN": TOKEN, "MNIST_POLL_INTERVAL_S": "0"}, registry=registry_copy)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        refused = client.post("/admin/promote", headers=auth, json={"version": damaged})
        assert refused.status_code == 500 and refused.json()["error"]["code"] == "model_load_failed"
        assert refused.json()["error"]["message"].startswith("no alias was moved: ")
        assert registry.aliases()["production"] == good
        registry.promote(damaged, reason="by hand, on the registry's host")
        newer = publish_copy(registry_copy, good)
        assert client.post("/admin/promote", headers=auth, json={"version": newer}).status_code == 200
        back = client.post("/admin/rollback", headers=auth)  # onto the damaged one: refused, nothing moves
        assert back.status_code == 500 and back.json()["error"]["message"].startswith("no alias was moved: ")
        assert registry.aliases()["production"] == newer
        assert client.get("/health/ready").json()["model_version"] == newer


@pytest.fixture()
def read_only_registry(registry_copy: Path) -> Iterator[Path]:
    """The registry behind a read-only bind mount, as the Kubernetes manifests mount it in every replica."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root; `make test` runs as root")
    subprocess.run(["mount", "--bind", str(registry_copy), str(registry_copy)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(registry_copy)], check=True)
        yield registry_copy
    finally:
        subprocess.run(["umount", str(registry_copy)], check=True)


def test_promote_and_rollback_on_a_read_only_registry_answer_registry_read_only(
    start_server, read_only_registry: Path
) -> None:
    server = start_server({"MNIST_ADMIN_TOKEN": TOKEN, "MNIST_POLL_INTERVAL_S": "0"}, registry=read_only_registry)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        version = client.get("/models").json()["model_version"]
        for path, body in (("/admin/promote", {"version": version, "alias": "staging"}), ("/admin/rollback", None)):
            answer = client.post(path, headers=auth, json=body)
            assert answer.status_code == 409, (path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "registry_read_only", path
            assert "read-only" in error["message"] and "Read-only file system" in error["message"], path
        assert client.get("/health/ready").status_code == 200  # still serving what it served
