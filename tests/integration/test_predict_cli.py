"""``python -m service predict`` and ``mnist-predict``: the server's answers on local files, without a server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from registry import Registry
from tests.conftest import ServerHandle
from tests.helpers import ROOT, as_json_rows, publish_copy, real_digits, to_png

DIGITS, _ = real_digits(2)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("predict-files")
    paths = {
        "photo": folder / "photo.png",
        "digit": folder / "digit.json",
        "blank": folder / "blank.png",
        "noise": folder / "noise.json",
    }
    paths["photo"].write_bytes(to_png(DIGITS[0], dark_on_light=True, scale=4))
    paths["digit"].write_text(json.dumps({"image": as_json_rows(DIGITS[1])}))
    paths["blank"].write_bytes(to_png(np.zeros((28, 28), dtype=np.uint8)))
    paths["noise"].write_text(json.dumps({"image": np.random.default_rng(1).integers(0, 256, (28, 28)).tolist()}))
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
    # The guards' refusal in the server's words for one image ("the image does not look like ...").
    done = predict("--json", files["noise"], registry=tiny_registry)
    error = json.loads(done.stdout)["error"]
    assert done.returncode == 1 and error["message"].startswith("the image "), error


def test_bad_usage_exits_2(files: dict[str, Path], tiny_registry: Path, tmp_path: Path) -> None:
    assert predict(tmp_path / "missing.png", registry=tiny_registry).returncode == 2
    assert predict("--no-such-flag", files["digit"], registry=tiny_registry).returncode == 2
    empty = predict(files["digit"], registry=tmp_path)
    assert empty.returncode == 2 and "no model" in empty.stderr


def test_a_device_that_cannot_be_used_exits_2_with_one_line(
    files: dict[str, Path], tiny_registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SavedModel backend finds the device only as it loads (onnxruntime's is checked before, as at serve)."""
    from service import predict_cli
    from service.errors import DeviceUnavailable
    from service.inference.model_manager import ModelManager

    async def no_gpu(self: ModelManager, **_: object) -> None:
        raise DeviceUnavailable("MNIST_DEVICE=cuda, but TensorFlow sees no GPU")

    monkeypatch.setattr(ModelManager, "start", no_gpu)
    args = predict_cli.parse_args(["--models", str(tiny_registry), str(files["digit"])])
    assert asyncio.run(predict_cli.run(args, predict_cli.settings_for(args))) == 2
    assert capsys.readouterr().err == "MNIST_DEVICE: MNIST_DEVICE=cuda, but TensorFlow sees no GPU\n"


def test_a_refused_production_is_no_answer_not_an_earlier_versions(files: dict[str, Path], registry_copy: Path) -> None:
    """The server stands in with an earlier production while production's own is refused; the command answers
    with what it was asked for or not at all."""
    registry = Registry(registry_copy)
    first = registry.resolve(None)
    registry.promote(first, reason="the earlier one")
    damaged = publish_copy(registry_copy, first, onnx=b"not an onnx model")
    registry.promote(damaged, reason="damaged before it was published")
    done = predict(files["digit"], registry=registry_copy)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("no model to predict with: ") and f"version {damaged}" in done.stderr
