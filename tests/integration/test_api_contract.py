"""Schemathesis, with all of its checks, against a real server and its OpenAPI document: the contract holds.

The CLI runs in a subprocess with the repository's schemathesis.toml (and its hook: the only schema-valid
requests allowed to be refused are the content-level refusals listed there), bounded examples and a fixed
seed. The admin routes are tested with their token, on a copy of the registry they may change.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerHandle, running_server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "patch", "delete"}


ADMIN_TOKEN = "contract-admin-token-0123456789"


@pytest.fixture(scope="module")
def fuzzed(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    registry = tmp_path_factory.mktemp("contract-registry") / "registry"
    shutil.copytree(tiny_registry, registry)  # promote and rollback may move its aliases
    with running_server(
        tmp_path_factory.mktemp("contract"), {"MNIST_ADMIN_TOKEN": ADMIN_TOKEN}, registry=registry
    ) as handle:
        yield handle


def test_openapi_documents_the_prediction_bodies(fuzzed: ServerHandle) -> None:
    """The fuzzer can only send what the schema describes: every accepted body type must be in it."""
    paths = httpx.get(fuzzed.base_url + "/openapi.json", timeout=5).json()["paths"]
    single = paths["/predict"]["post"]["requestBody"]["content"]
    assert set(single) == {"application/json", "multipart/form-data", "image/png", "image/jpeg"}
    assert single["multipart/form-data"]["schema"]["required"] == ["file"]
    batch = paths["/predict/batch"]["post"]["requestBody"]["content"]
    assert set(batch) == {"application/json", "multipart/form-data"}
    assert {"/models/{version}", "/health/live", "/health/ready"} <= set(paths)


def test_schemathesis_finds_every_operation_true_to_its_schema(fuzzed: ServerHandle, tmp_path: Path) -> None:
    document = httpx.get(fuzzed.base_url + "/openapi.json", timeout=5).json()
    operations = [m for item in document["paths"].values() for m in item if m in METHODS]
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(ROOT / "schemathesis.toml"),
        "run",
        fuzzed.base_url + "/openapi.json",
        "--checks",
        "all",
        # Every phase and every check on every operation; the examples per operation bound the time (~20 s).
        "--max-examples",
        "20",
        "--workers",
        "1",
        "--seed",
        "4",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "contract.xml"),
        "--no-color",
        # The admin operations' credentials; the tester also sends requests without them (they must answer 401).
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
    ]
    # cwd: the run's replay files land in tmp_path; PYTHONPATH: the hook module of schemathesis.toml is found.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    # Every operation of the document was exercised (a filter or a broken schema would otherwise pass vacuously).
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None and int(tested.group(1)) == len(operations), output[-3000:]
