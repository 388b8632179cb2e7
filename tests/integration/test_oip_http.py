"""The Open Inference Protocol over HTTP, spoken by NVIDIA's own client (tritonclient.http) to a real server."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import ServerHandle
from tests.helpers import answered_digits, as_json_rows, real_digits

DIGITS = real_digits(3)[0]  # single digits and a batch of three; batches of eight: the eight fixture


@pytest.fixture(scope="module")
def client(served: ServerHandle) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(served.base_url.removeprefix("http://"), network_timeout=30)


@pytest.fixture(scope="module")
def eight(served: ServerHandle) -> tuple[np.ndarray, np.ndarray]:
    return answered_digits(served.base_url, 8)


def fp32(images: np.ndarray) -> np.ndarray:
    """[N, 28, 28] 0..255 -> the model's own input, FP32 [N, 28, 28, 1] in 0..1."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def image_input(array: np.ndarray, datatype: str, *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("image", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def refusal(call: object) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_server_and_model_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    model = client.get_model_metadata("mnist")
    version = model["versions"][0]
    assert model["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    outputs = {o["name"]: o for o in model["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, 10] and outputs["features"]["datatype"] == "FP32"
    assert client.is_model_ready("mnist") and client.is_model_ready("mnist", version)
    assert client.get_model_metadata("mnist", version) == model
    assert not client.is_model_ready("mnist", str(int(version) + 1)) and not client.is_model_ready("fashion")


def test_fp32_json_and_uint8_binary_agree_with_predict(client: triton.InferenceServerClient, served) -> None:
    as_json = client.infer("mnist", [image_input(fp32(DIGITS[:1]), "FP32", binary=False)])
    as_uint8 = client.infer("mnist", [image_input(DIGITS[:1], "UINT8")])
    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        ours = http.post("/predict", json={"image": as_json_rows(DIGITS[0])}).json()
    for result in (as_json, as_uint8):
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (1, 10) and result.as_numpy("features") is None  # features only on request
        np.testing.assert_allclose(probabilities[0], ours["probabilities"], atol=1e-5)
        assert result.get_response()["model_version"] == str(ours["model_version"])


def test_a_batch_of_eight_in_binary_both_ways(
    client: triton.InferenceServerClient, eight: tuple[np.ndarray, np.ndarray]
) -> None:
    digits, labels = eight
    outputs = [triton.InferRequestedOutput(name, binary_data=True) for name in ("probabilities", "features")]
    result = client.infer("mnist", [image_input(fp32(digits), "FP32")], outputs=outputs, request_id="batch-8")
    response = result.get_response()
    assert response["id"] == "batch-8"
    assert all("data" not in o and o["parameters"]["binary_data_size"] > 0 for o in response["outputs"])
    probabilities, features = result.as_numpy("probabilities"), result.as_numpy("features")
    assert probabilities.shape == (8, 10) and features.shape[0] == 8 and features.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.5  # the tiny model reads real digits
    versioned = client.infer("mnist", [image_input(fp32(digits), "FP32")], model_version=response["model_version"])
    np.testing.assert_allclose(versioned.as_numpy("probabilities"), probabilities, atol=1e-6)


def test_one_refused_image_fails_the_request_and_names_it(client: triton.InferenceServerClient) -> None:
    images = DIGITS[:3].copy()
    images[2] = 0  # blank: nothing to classify
    error = refusal(lambda: client.infer("mnist", [image_input(images, "UINT8")]))
    assert error.status() == "422" and "image 2" in error.message()


@pytest.mark.parametrize(
    ("call", "status", "says"),
    [
        (lambda c: c.infer("fashion", [image_input(DIGITS[:1], "UINT8")]), "404", "unknown model 'fashion'"),
        (lambda c: c.infer("mnist", [image_input(DIGITS[:1], "UINT8")], model_version="999"), "404", "version 999"),
        (lambda c: c.get_model_metadata("fashion"), "404", "unknown model"),
        # Outside the documented pattern, answered as infer answers it: they were 422 in pydantic's words, counted as
        # refused inputs.
        (lambda c: c.get_model_metadata("m" * 65), "404", "unknown model"),
        (lambda c: c.get_model_metadata("mnist", model_version="01"), "422", "version must be a positive integer"),
        (lambda c: c.infer("mnist", [image_input(DIGITS[:1, :14], "UINT8")]), "422", "input shape must be"),
        (lambda c: c.infer("mnist", [image_input(DIGITS[:1].astype(np.int32), "INT32")]), "422", "datatype"),
        (lambda c: c.infer("mnist", [image_input(fp32(DIGITS[:1]) * 255, "FP32")]), "422", "0..1"),
        (
            lambda c: c.infer("mnist", [image_input(DIGITS[:1], "UINT8")], outputs=[triton.InferRequestedOutput("x")]),
            "422",
            "unknown output",
        ),
        (
            lambda c: c.infer(
                "mnist",
                [image_input(DIGITS[:1], "UINT8")],
                outputs=[triton.InferRequestedOutput("probabilities", class_count=2)],
            ),
            "422",
            "classification extension is not supported",
        ),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "unknown-model-metadata",
        "model-name-past-the-pattern",
        "version-past-the-pattern",
        "wrong-shape",
        "wrong-datatype",
        "fp32-range",
        "unknown-output",
        "classification",
    ],
)
def test_mistakes_are_clear_4xx(client: triton.InferenceServerClient, call, status: str, says: str) -> None:
    error = refusal(lambda: call(client))
    assert error.status() == status and says in error.message(), (error.status(), error.message())


def test_errors_metrics_and_openapi_speak_the_protocol(served: ServerHandle) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        refused = http.post("/v2/models/mnist/infer", content=b"{", headers={"Content-Type": "application/json"})
        too_big = http.post("/v2/models/mnist/infer", content=b"x", headers={"Content-Type": "text/plain"})
        metrics = http.get("/metrics").text
        paths = http.get("/openapi.json").json()["paths"]
    assert refused.status_code == 400 and isinstance(refused.json()["error"], str)
    assert too_big.status_code == 415 and isinstance(too_big.json()["error"], str)
    assert 'endpoint="/v2/models/{model_name}/infer"' in metrics and 'protocol="oip"' in metrics
    assert {"/v2", "/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{version}/ready"} <= set(paths)


DEEP = "[" * 971 + "]" * 971  # orjson takes up to 1,024 levels; str() of them raised RecursionError


def infer_body(name: str = '"image"', datatype: str = '"UINT8"', data: str = "[]") -> str:
    """An infer request as JSON text: what a JSON library would refuse to write is sent as is."""
    return f'{{"inputs": [{{"name": {name}, "datatype": {datatype}, "shape": [1, 28, 28], "data": {data}}}]}}'


@pytest.mark.parametrize(
    ("body", "header_length", "says"),
    [
        (infer_body(), "9" * 5_000, "Inference-Header-Content-Length"),  # past the 4,300 digits int() converts
        (infer_body(name=DEEP), None, "unknown input (a list, not a string)"),
        (infer_body(datatype=DEEP), None, "datatype must be FP32 (0..1) or UINT8"),
        (infer_body(data="[" + ",".join(['" 12 "'] * 784) + "]"), None, "numbers only"),
        (infer_body(data="[" + ",".join(["true"] * 784) + "]"), None, "numbers only"),
    ],
    ids=["header-length-of-5000-digits", "deep-input-name", "deep-datatype", "strings", "booleans"],
)
def test_hostile_infer_bodies_are_422_not_500(
    served: ServerHandle, body: str, header_length: str | None, says: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    with httpx.Client(base_url=served.base_url, timeout=10) as http:
        answer = http.post("/v2/models/mnist/infer", content=body.encode(), headers=headers)
    assert answer.status_code == 422 and says in answer.json()["error"], (answer.status_code, answer.text[:300])
