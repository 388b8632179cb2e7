"""POST /predict and /predict/batch against a real uvicorn process and the real tiny model."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np

from tests.conftest import ServerHandle
from tests.helpers import as_json_rows, real_digits, to_jpeg, to_png

DIGITS, LABELS = real_digits(10)


def check_prediction(body: dict, with_probabilities: bool = True) -> None:
    assert 0 <= body["digit"] <= 9 and 0 <= body["confidence"] <= 1
    assert isinstance(body["model_version"], int) and body["model_version"] >= 1
    if with_probabilities:
        assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-3
        assert body["digit"] == int(np.argmax(body["probabilities"]))


def answered(results: list[dict]) -> list[tuple[int, int]]:
    """(predicted, expected) for the images the guards did not refuse."""
    return [(r["digit"], int(y)) for r, y in zip(results, LABELS, strict=True) if "digit" in r]


def test_json_png_jpeg_and_multipart_all_answer(served: ServerHandle) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        image = DIGITS[0]
        forms = {
            "json": client.post("/predict", json={"image": as_json_rows(image)}),
            "png": client.post("/predict", content=to_png(image), headers={"Content-Type": "image/png"}),
            "jpeg": client.post("/predict", content=to_jpeg(image, scale=4), headers={"Content-Type": "image/jpeg"}),
            "multipart": client.post("/predict", files={"file": ("x.bin", to_png(image, dark_on_light=True, scale=8))}),
        }
    for name, response in forms.items():
        assert response.status_code == 200, (name, response.text)
        check_prediction(response.json())
        assert response.headers["x-request-id"]


def test_real_digits_are_mostly_right(served: ServerHandle) -> None:
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        results = [client.post("/predict", json={"image": as_json_rows(d)}).json() for d in DIGITS]
    pairs = answered(results)
    assert len(pairs) >= 8, results  # the guards may refuse a rare real digit, not most of them
    assert sum(p == y for p, y in pairs) >= len(pairs) - 2


def test_batch_json_and_multipart_keep_order(served: ServerHandle) -> None:
    blank = np.zeros((28, 28), dtype=np.uint8)
    images = [*DIGITS[:4], blank, *DIGITS[4:6]]
    with httpx.Client(base_url=served.base_url, timeout=20) as client:
        by_json = client.post("/predict/batch", json={"images": [as_json_rows(i) for i in images]})
        files = [("files", (f"{i}.png", to_png(img))) for i, img in enumerate(images)]
        by_form = client.post("/predict/batch", files=files)
        singles = [client.post("/predict", json={"image": as_json_rows(i)}).json() for i in DIGITS[:6]]
    for response in (by_json, by_form):
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["predictions"]) == len(images) and isinstance(body["model_version"], int)
        assert body["predictions"][4]["error"]["code"] == "no_digit"
        kept = [p for i, p in enumerate(body["predictions"]) if i != 4]
        # In order: each slot answers what /predict answers for the same image.
        assert [p.get("digit") for p in kept] == [s.get("digit") for s in singles]


def test_batch_count_limit_and_shape_errors(served: ServerHandle) -> None:
    row = as_json_rows(DIGITS[0])
    with httpx.Client(base_url=served.base_url, timeout=20) as client:
        too_many = client.post("/predict/batch", json={"images": [row] * 257})
        bad_shape = client.post("/predict/batch", json={"images": [row, [[1, 2, 3]]]})
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "too_many_images"
    assert bad_shape.status_code == 422 and bad_shape.json()["error"]["code"] == "invalid_input"
    assert "images[1]" in bad_shape.json()["error"]["message"]


GUARD_REFUSALS = {
    "not_a_digit": "does not look like a handwritten digit",
    "suspected_adversarial": "looks altered to mislead the model",
}


def test_blank_and_noise_are_refused_each_naming_its_image(served: ServerHandle) -> None:
    """In a batch the model sees only the images that parsed: its refusals named the noise "image 1" when a blank
    image sat before it in slot 0, and slot 1 held a digit."""
    noise = np.random.default_rng(1).integers(0, 256, size=(28, 28)).tolist()
    blank = [[0] * 28] * 28
    with httpx.Client(base_url=served.base_url, timeout=10) as client:
        alone_blank = client.post("/predict", json={"image": blank})
        alone_noise = client.post("/predict", json={"image": noise})
        batch = client.post("/predict/batch", json={"images": [blank, blank, as_json_rows(DIGITS[0]), noise]})
        oip = client.post(
            "/v2/models/mnist/infer",
            json={
                "inputs": [
                    {"name": "image", "datatype": "UINT8", "shape": [2, 28, 28], "data": [DIGITS[0].tolist(), noise]}
                ]
            },
        )
    assert alone_blank.status_code == 422 and alone_blank.json()["error"]["code"] == "no_digit"
    assert alone_noise.status_code == 422
    code = alone_noise.json()["error"]["code"]
    assert alone_noise.json()["error"]["message"] == f"the image {GUARD_REFUSALS[code]}"
    entries = batch.json()["predictions"]
    assert [e["error"]["code"] for e in entries[:2]] == ["no_digit", "no_digit"] and "digit" in entries[2]
    assert entries[3]["error"] == {"code": code, "message": f"image 3 {GUARD_REFUSALS[code]}"}
    assert oip.status_code == 422 and oip.json()["error"] == f"image 1 {GUARD_REFUSALS[code]}"


def test_without_probabilities_only_digit_and_rounded_confidence(start_server, tiny_registry) -> None:
    server = start_server({"MNIST_RETURN_PROBABILITIES": "false"}, registry=tiny_registry)
    body = httpx.post(server.base_url + "/predict", json={"image": as_json_rows(DIGITS[1])}, timeout=10).json()
    assert set(body) == {"digit", "confidence", "model_version"}
    assert body["confidence"] == round(body["confidence"], 2)


def test_request_id_is_echoed(served: ServerHandle) -> None:
    response = httpx.get(served.base_url + "/health/live", headers={"X-Request-ID": "trace-me.42"})
    assert response.headers["x-request-id"] == "trace-me.42"
    generated = httpx.get(served.base_url + "/health/live", headers={"X-Request-ID": "no spaces allowed"})
    assert generated.headers["x-request-id"] != "no spaces allowed" and len(generated.headers["x-request-id"]) == 32


def test_a_quiet_request_reaches_the_access_log_within_two_seconds(served: ServerHandle) -> None:
    """Access lines are buffered; the once-a-second flush still gets a lone request's line out."""
    image = {"image": as_json_rows(DIGITS[0])}
    response = httpx.post(served.base_url + "/predict", json=image, headers={"X-Request-ID": "lone-request.7"})
    assert response.status_code == 200, response.text  # DIGITS[0] is answered in every form (test above)
    deadline = time.monotonic() + 2.5
    while '"request_id":"lone-request.7"' not in served.logs() and time.monotonic() < deadline:
        time.sleep(0.1)
    (line,) = [json.loads(raw) for raw in served.logs().splitlines() if '"request_id":"lone-request.7"' in raw]
    assert line["logger"] == "service.access" and line["route"] == "/predict" and line["method"] == "POST"
    assert line["status"] == response.status_code and line["duration_ms"] > 0
