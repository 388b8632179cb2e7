"""``python -m service predict`` and ``mnist-predict``: the server's answers on local files, without a server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import ServerHandle
from tests.helpers import ROOT, as_json_rows, real_digits, to_png

DIGITS, _ = real_digits(2)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("predict-files")
    paths = {
        "photo": folder / "photo.png",
        "digit": folder / "digit.json",
        "blank": folder / "blank.png",
    }
    paths["photo"].write_bytes(to_png(DIGITS[0], dark_on_light=True, scale=4))
    paths["digit"].write_text(json.dumps({"image": as_json_rows(DIGITS[1])}))
    paths["blank"].write_bytes(to_png(np.zeros((28, 28), dtype=np.uint8)))
    return paths


def predict(*args: str | Path, registry: Path, script: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("mnist-predict"))] if script else [sys.executable, "-m", "service"]
    command += [] if script else ["predict"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_")}
    return subprocess.run(
        [*command, "--models", str(registry), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def test_answers_like_the_server_one_json_line_per_file(
    files: dict[str, Path], tiny_registry: Path, served: ServerHandle
) -> None:
    done = predict("--json", files["photo"], files["digit"], registry=tiny_registry)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(files["photo"]), str(files["digit"])]
    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        server = http.post("/predict", content=files["photo"].read_bytes(), headers={"Content-Type": "image/png"})
    assert server.status_code == 200
    expected = server.json()
    assert lines[0]["digit"] == expected["digit"] and lines[0]["model_version"] == expected["model_version"]
    np.testing.assert_allclose(lines[0]["probabilities"], expected["probabilities"], atol=1e-5)


def test_a_refused_file_exits_1_and_the_console_script_says_why(files: dict[str, Path], tiny_registry: Path) -> None:
    done = predict(files["digit"], files["blank"], "--version", "1", registry=tiny_registry, script=True)
    assert done.returncode == 1, done.stderr
    answered, refused = done.stdout.splitlines()
    assert answered.startswith(f"{files['digit']}: ") and "version 1" in answered
    assert refused.startswith(f"{files['blank']}: refused (no_digit)")


def test_bad_usage_exits_2(files: dict[str, Path], tiny_registry: Path, tmp_path: Path) -> None:
    assert predict(tmp_path / "missing.png", registry=tiny_registry).returncode == 2
    assert predict("--no-such-flag", files["digit"], registry=tiny_registry).returncode == 2
    empty = predict(files["digit"], registry=tmp_path)
    assert empty.returncode == 2 and "no model" in empty.stderr
