"""A typed Python client generated from the live /openapi.json (openapi-python-client) works against a real server.

The client is generated into pytest's tmp_path (nothing generated enters the repository) and imported from there.
It predicts a JSON digit, a multipart picture and a raw JPEG, reads /models, and gets the error envelope back as
a typed ``ErrorOut`` for a refused input: what a user of another language's generator would meet first.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import ServerHandle
from tests.helpers import as_json_rows, real_digits, to_jpeg, to_png

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "mnist_api_client"
# The generator's settings, not the schema's: it sends a File body as application/octet-stream unless told that
# image/png and image/jpeg are such bodies too; and no post-generation formatting (ruff) is needed to import it.
CONFIG = """\
post_hooks: []
content_type_overrides:
  image/png: application/octet-stream
  image/jpeg: application/octet-stream
"""


@pytest.fixture(scope="module")
def api(served: ServerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """The generated package's modules used here, by short name."""
    where = tmp_path_factory.mktemp("generated-client")
    (where / "openapi.json").write_bytes(httpx.get(served.base_url + "/openapi.json", timeout=5).content)
    (where / "config.yaml").write_text(CONFIG)
    command = [str(GENERATOR), "generate", "--path", "openapi.json", "--meta", "none", "--output-path", PACKAGE]
    done = subprocess.run([*command, "--config", "config.yaml"], cwd=where, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Warning" not in output, output[-4000:]
    sys.path.insert(0, str(where))
    try:
        names = {
            "client": "client",
            "types": "types",
            "models": "models",
            "predict": "api.predict.predict_predict_post",
            "batch": "api.predict.predict_batch_predict_batch_post",
            "list_models": "api.models.list_models_models_get",
            "metadata": "api.models.model_metadata_models_version_get",
        }
        yield {short: importlib.import_module(f"{PACKAGE}.{name}") for short, name in names.items()}
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def client(api: dict[str, ModuleType], served: ServerHandle) -> Iterator[Any]:
    with api["client"].Client(base_url=served.base_url, raise_on_unexpected_status=True, timeout=30) as made:
        yield made


def direct_digit(served: ServerHandle, image: Any) -> int:
    answer = httpx.post(served.base_url + "/predict", json={"image": as_json_rows(image)}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["digit"]


def test_the_generated_client_predicts_a_json_digit(api: dict[str, ModuleType], client: Any, served: ServerHandle):
    images, _ = real_digits(1)
    body = api["models"].PredictPredictPostJsonJsonImageIn(image=as_json_rows(images[0]))
    response = api["predict"].sync_detailed(client=client, body=body)
    assert response.status_code == 200
    answer = response.parsed
    assert isinstance(answer, api["models"].PredictionOut)
    assert answer.digit == direct_digit(served, images[0]) and answer.model_version == 1
    assert len(answer.probabilities) == 10 and response.headers["x-model-version"] == "1"


def test_the_generated_client_predicts_pictures_as_multipart_and_raw_bytes(
    api: dict[str, ModuleType], client: Any, served: ServerHandle
):
    images, _ = real_digits(2)
    File = api["types"].File
    upload = File(
        payload=io.BytesIO(to_png(images[0], dark_on_light=True, scale=4)), file_name="d.png", mime_type="image/png"
    )
    form = api["predict"].sync(client=client, body=api["models"].PredictPredictPostFilesBody(file=upload))
    assert isinstance(form, api["models"].PredictionOut) and 0 <= form.digit <= 9
    raw = File(payload=io.BytesIO(to_jpeg(images[1], scale=4)), file_name="d.jpg", mime_type="image/jpeg")
    answer = api["predict"].sync(client=client, body=raw)
    assert isinstance(answer, api["models"].PredictionOut) and answer.model_version == 1


def test_the_generated_client_reads_models_and_a_batch(api: dict[str, ModuleType], client: Any):
    listing = api["list_models"].sync(client=client)
    assert listing is not None and listing["model_version"] == 1 and listing["ready"] is True
    metadata = api["metadata"].sync(client=client, version=1)
    assert metadata is not None and metadata["version"] == 1
    images, _ = real_digits(1)
    blank = [[0] * 28 for _ in range(28)]
    body = api["models"].PredictBatchPredictBatchPostJsonJsonBatchIn(images=[as_json_rows(images[0]), blank])
    batch = api["batch"].sync(client=client, body=body)
    assert isinstance(batch, api["models"].BatchOut)
    first, second = batch.predictions
    assert isinstance(first, api["models"].PredictionOut)
    assert isinstance(second, api["models"].ErrorOut) and second.error.code == "no_digit"


def test_the_generated_client_gets_a_typed_error_for_a_refused_input(api: dict[str, ModuleType], client: Any):
    blank = api["models"].PredictPredictPostJsonJsonImageIn(image=[[0] * 28 for _ in range(28)])
    response = api["predict"].sync_detailed(client=client, body=blank)
    assert response.status_code == 422
    assert isinstance(response.parsed, api["models"].ErrorOut)
    assert response.parsed.error.code == "no_digit" and response.parsed.error.message
    missing = api["metadata"].sync_detailed(client=client, version=999)
    assert missing.status_code == 404 and isinstance(missing.parsed, api["models"].ErrorOut)
    assert missing.parsed.error.code == "version_not_found"
