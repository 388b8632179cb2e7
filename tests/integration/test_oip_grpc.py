"""The Open Inference Protocol over gRPC (MNIST_GRPC_PORT), spoken by tritonclient.grpc to a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from loadtests import server
from tests.conftest import ServerHandle, running_server
from tests.helpers import answered_digits, as_json_rows, real_digits

DIGITS = real_digits(3)[0]  # single digits and a batch of three; batches of eight: the eight fixture


@pytest.fixture(scope="module")
def grpc_served(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, str]]:
    port = server.free_port()
    env = {"MNIST_GRPC_PORT": str(port)}
    with running_server(tmp_path_factory.mktemp("grpc"), env, registry=tiny_registry) as handle:
        yield handle, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def client(grpc_served: tuple[ServerHandle, str]) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(grpc_served[1]) as grpc_client:
        yield grpc_client


def image_input(array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput("image", list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@pytest.fixture(scope="module")
def eight(grpc_served: tuple[ServerHandle, str]) -> tuple[np.ndarray, np.ndarray]:
    return answered_digits(grpc_served[0].base_url, 8)


def fp32(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def test_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata().extensions
    model = client.get_model_metadata("mnist", as_json=True)
    version = model["versions"][0]
    assert model["inputs"][0] == {"name": "image", "datatype": "FP32", "shape": ["-1", "28", "28", "1"]}
    assert client.is_model_ready("mnist") and client.is_model_ready("mnist", version)
    assert not client.is_model_ready("mnist", str(int(version) + 1)) and not client.is_model_ready("fashion")


def test_infer_fp32_and_uint8_agree_with_http(client: triton.InferenceServerClient, grpc_served) -> None:
    handle, _ = grpc_served
    with httpx.Client(base_url=handle.base_url, timeout=10) as http:
        ours = http.post("/predict", json={"image": as_json_rows(DIGITS[0])}).json()
    for result in (client.infer("mnist", [image_input(fp32(DIGITS[:1]), "FP32")]),
                   client.infer("mnist", [image_input(DIGITS[:1], "UINT8")])):  # fmt: skip
        np.testing.assert_allclose(result.as_numpy("probabilities")[0], ours["probabilities"], atol=1e-5)
        assert result.get_response().model_version == str(ours["model_version"])


def test_a_batch_of_eight_with_features(
    client: triton.InferenceServerClient, eight: tuple[np.ndarray, np.ndarray]
) -> None:
    digits, labels = eight
    outputs = [triton.InferRequestedOutput("probabilities"), triton.InferRequestedOutput("features")]
    result = client.infer("mnist", [image_input(fp32(digits), "FP32")], outputs=outputs, request_id="g8")
    probabilities = result.as_numpy("probabilities")
    assert result.get_response().id == "g8" and probabilities.shape == (8, 10)
    assert result.as_numpy("features").shape[0] == 8
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.5


@pytest.mark.parametrize(
    ("call", "status", "says"),
    [
        (lambda c: c.infer("fashion", [image_input(DIGITS[:1], "UINT8")]), "NOT_FOUND", "unknown model"),
        (lambda c: c.infer("mnist", [image_input(DIGITS[:1], "UINT8")], model_version="999"), "NOT_FOUND", "999"),
        (lambda c: c.infer("mnist", [image_input(DIGITS[:1, :14], "UINT8")]), "INVALID_ARGUMENT", "input shape"),
        (lambda c: c.infer("mnist", [image_input(DIGITS[:1].astype(np.int32), "INT32")]), "INVALID_ARGUMENT", "FP32"),
        (lambda c: c.infer("mnist", [image_input(np.zeros((2, 28, 28), np.uint8), "UINT8")]), "INVALID_ARGUMENT",
         "image 0"),
        (lambda c: c.infer("mnist", [image_input(DIGITS[:1], "UINT8")],
                           outputs=[triton.InferRequestedOutput("probabilities", class_count=2)]),
         "INVALID_ARGUMENT", "classification extension is not supported"),
    ],
    ids=["unknown-model", "unknown-version", "wrong-shape", "wrong-datatype", "refused-image", "classification"],
)  # fmt: skip
def test_mistakes_are_clear_status_codes(client: triton.InferenceServerClient, call, status: str, says: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call(client)
    assert caught.value.status() == f"StatusCode.{status}" and says in caught.value.message()


def test_calls_are_counted_with_the_grpc_protocol_label(client: triton.InferenceServerClient, grpc_served) -> None:
    client.infer("mnist", [image_input(DIGITS[:1], "UINT8")])
    with httpx.Client(base_url=grpc_served[0].base_url, timeout=10) as http:
        metrics = http.get("/metrics").text
    assert 'endpoint="/inference.GRPCInferenceService/ModelInfer"' in metrics and 'protocol="grpc"' in metrics


def test_raw_contents_beyond_the_one_input_are_refused_not_ignored(grpc_served) -> None:
    """What Triton does: one raw_input_contents entry per input, or none; a surplus one is a client's mistake."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=[1, 28, 28])
    raw = DIGITS[:1].astype(np.uint8).tobytes()
    with grpc.insecure_channel(grpc_served[1]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        one = stub.ModelInfer(
            service_pb2.ModelInferRequest(model_name="mnist", inputs=[tensor], raw_input_contents=[raw])
        )
        assert one.outputs and one.outputs[0].name
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(
                service_pb2.ModelInferRequest(model_name="mnist", inputs=[tensor], raw_input_contents=[raw, raw])
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "2 raw_input_contents for one input tensor" in (caught.value.details() or "")


def test_refused_requests_of_two_million_outputs_leave_the_server_its_memory(grpc_served) -> None:
    """4.19 MB of empty `outputs` entries, under the message limit: refused, and the refusal keeps neither the
    request nor what was made of it. Each such call grew the server by 100 to 500 MB until a full collection."""
    import grpc
    import psutil
    from tritonclient.grpc import service_pb2

    handle, address = grpc_served
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=[1, 28, 28])
    request = service_pb2.ModelInferRequest(
        model_name="mnist", inputs=[tensor], raw_input_contents=[DIGITS[0].tobytes()]
    )
    raw = request.SerializeToString() + b"\x32\x00" * 2_095_000  # field 6 (outputs), an empty message each
    process = psutil.Process(handle.process.pid)

    def refuse() -> None:
        with pytest.raises(grpc.RpcError) as caught:
            infer(raw, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "more outputs requested than the model has" in (caught.value.details() or "")

    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        refuse()  # the first: the allocator keeps the ~100 MB that grpc's parse of two million entries took
        before = process.memory_info().rss
        for _ in range(5):
            refuse()
    grown_mib = (process.memory_info().rss - before) / 2**20
    assert grown_mib < 100, f"the server grew by {grown_mib:.0f} MiB over 5 refused requests"
