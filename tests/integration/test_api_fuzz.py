"""Schemathesis against the live server's OpenAPI document: no operation answers 5xx.

The CLI runs in a subprocess (its own hypothesis settings, bounded examples and time). Admin routes
are mounted but no token is given, so the fuzzer only ever meets 401/403 there and never changes the
shared registry.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerHandle, running_server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
FUZZED = ["/predict", "/predict/batch", "/models", "/models/{version}", "/health/live", "/health/ready"]


@pytest.fixture(scope="module")
def fuzzed(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    with running_server(
        tmp_path_factory.mktemp("fuzz"), {"MNIST_ADMIN_TOKEN": "fuzz-admin-token-0123456789"}, registry=tiny_registry
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


def test_fuzzing_finds_no_server_error(fuzzed: ServerHandle, tmp_path: Path) -> None:
    junit = tmp_path / "fuzz.xml"
    command = [
        str(SCHEMATHESIS),
        "run",
        fuzzed.base_url + "/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "50",
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
        str(junit),
        "--no-color",
    ]
    for path in FUZZED:
        command += ["--include-path", path]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    # Every operation we name was exercised (a filter typo would otherwise pass vacuously).
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None and int(tested.group(1)) == len(FUZZED), output[-3000:]
