"""HTTP layer with a fake model manager and fake decoders: routes, envelope, batch semantics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from registry import Registry
from service.inputs import decoder
from service.settings import Settings
from tests.helpers import as_json_rows, promoted_versions, synthetic_digit, to_png
from tests.unit import api_fakes
from tests.unit.api_fakes import PNG_MAGIC, QUEUE_FULL, FakeManager, rejections

TOKEN = "s3cret-admin-token-0123"
PNG = PNG_MAGIC + b"rest-of-a-png"

ClientFactory = Callable[..., TestClient]


def code_of(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def test_predict_json_answers_the_contract(make_client: ClientFactory) -> None:
    response = make_client().post("/predict", json={"image": as_json_rows(synthetic_digit())})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"digit", "confidence", "probabilities", "model_version"}
    assert body["digit"] == 7 and body["model_version"] == 3 and len(body["probabilities"]) == 10


def test_predict_raw_png_and_multipart(make_client: ClientFactory) -> None:
    client = make_client()
    raw = client.post("/predict", content=PNG, headers={"Content-Type": "image/png"})
    assert raw.status_code == 200, raw.text
    for alias in ("image/jpg", "image/pjpeg", "image/x-png", "Image/JPG; q=1"):  # older names clients still send
        assert client.post("/predict", content=PNG, headers={"Content-Type": alias}).status_code == 200, alias
    form = client.post("/predict", files={"file": ("whatever.exe", PNG, "application/octet-stream")})
    assert form.status_code == 200, form.text


def test_without_probabilities_confidence_is_rounded(make_client: ClientFactory) -> None:
    body = make_client(return_probabilities=False).post("/predict", content=PNG, headers={"Content-Type": "image/png"})
    assert body.json() == {"digit": 7, "confidence": 0.91, "model_version": 3}


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b'{"image": [[NaN]]}', 400, "invalid_json"),
        (b'{"image": [[1, 2]', 400, "invalid_json"),
        (b"[" * 100_000, 400, "invalid_json"),  # nested past the parser's 1,024 levels, said so before parsing
        (b"[[]," * 1_000 + b"[]]", 422, "invalid_input"),  # more arrays than one image holds: refused before parsing
        (b'{"image": [[1]]}', 422, "invalid_input"),
        (b'{"image": [[0]], "extra": 1}', 422, "invalid_input"),
        (b'{"picture": 1}', 422, "invalid_input"),
        (b"[]", 422, "invalid_input"),
    ],
)
def test_bad_json_gets_its_code(make_client: ClientFactory, payload: bytes, status: int, code: str) -> None:
    response = make_client().post("/predict", content=payload, headers={"Content-Type": "application/json"})
    assert response.status_code == status and code_of(response) == code


def test_a_body_that_is_no_utf8_is_named_so(make_client: ClientFactory) -> None:
    """orjson's words were "str is not valid UTF-8: surrogates not allowed"."""
    latin1 = '{"image": "caf\u00e9"}'.encode("latin-1")
    response = make_client().post("/predict", content=latin1, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == {
        "code": "invalid_json",
        "message": "the body is not UTF-8 text, as JSON must be",
    }


def test_a_body_of_more_arrays_than_its_images_can_hold_is_refused_before_parsing(make_client: ClientFactory) -> None:
    """1.4 million empty arrays in 4 MB cost the parser half a second of the event loop, each request."""
    client = make_client(max_batch_images=4)
    arrays = b"[" + b",".join([b"[]"] * 3316) + b"]"  # with the outer one, one more than 4 images can hold
    body = b'{"images":%s}' % arrays
    response = client.post("/predict/batch", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    text = response.text
    assert "the body holds more JSON arrays than 4 images can (3316); send each image as 28 rows of 28 numbers" in text


def test_blank_and_non_digit_are_422(make_client: ClientFactory) -> None:
    client = make_client()
    blank = client.post("/predict", json={"image": [[0] * 28] * 28})
    assert blank.status_code == 422 and code_of(blank) == "no_digit"
    ink = client.post("/predict", json={"image": [[255] * 28] * 28})
    assert ink.status_code == 422 and code_of(ink) == "not_a_digit"


def test_image_errors_and_decoder_surprises_are_4xx(make_client: ClientFactory) -> None:
    client = make_client(decode_timeout_s=0.2)
    gif = client.post("/predict", content=b"GIF89a...", headers={"Content-Type": "image/png"})
    assert gif.status_code == 415 and code_of(gif) == "unsupported_image_format"
    boom = client.post("/predict", content=b"BOOM", headers={"Content-Type": "image/jpeg"})
    assert boom.status_code == 400 and code_of(boom) == "invalid_image"
    slow = client.post("/predict", content=b"SLOW", headers={"Content-Type": "image/png"})
    assert slow.status_code == 400 and code_of(slow) == "decode_timeout"


def test_multipart_needs_exactly_one_file(make_client: ClientFactory) -> None:
    client = make_client()
    two = client.post("/predict", files=[("file", ("a.png", PNG)), ("file", ("b.png", PNG))])
    assert two.status_code == 422 and code_of(two) == "too_many_images"
    assert two.json()["error"]["message"] == "too many file parts; at most 1"
    none = client.post("/predict", files={"other": ("a.png", PNG)})
    assert none.status_code == 400 and code_of(none) == "invalid_multipart"
    text = client.post("/predict", data={"file": "not a file"}, files={"x": ("a", b"")})
    assert text.status_code == 400 and code_of(text) == "invalid_multipart"
    broken = client.post(
        "/predict", content=b"--xx\r\ngarbage", headers={"Content-Type": "multipart/form-data; boundary=xx"}
    )
    assert broken.status_code == 400 and code_of(broken) == "invalid_multipart"
    extra = client.post("/predict", data={"note": "hi"}, files={"file": ("a.png", PNG)})
    assert extra.status_code == 400 and "unexpected form part 'note'" in extra.json()["error"]["message"]
    batch_extra = client.post("/predict/batch", files=[("files", ("a.png", PNG)), ("file", ("b.png", PNG))])
    assert batch_extra.status_code == 400 and "send only parts named 'files'" in batch_extra.json()["error"]["message"]


def test_batch_keeps_order_and_refuses_per_image(make_client: ClientFactory) -> None:
    manager = FakeManager()
    client = make_client(manager=manager)
    digit = as_json_rows(synthetic_digit())
    response = client.post("/predict/batch", json={"images": [digit, [[0] * 28] * 28, [[255] * 28] * 28, digit]})
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == 3
    kinds = [p.get("digit", p.get("error", {}).get("code")) for p in body["predictions"]]
    assert kinds == [7, "no_digit", "not_a_digit", 7]
    assert manager.calls == [3]  # the blank never reached the model; the rest went in one call


def test_a_batch_of_pngs_holding_more_pixels_than_sixteen_of_the_largest_is_refused_whole(
    make_client: ClientFactory,
) -> None:
    """198 blank 2000x2000 PNGs fit in 4 MB and took the decode threads ten seconds, every other client waiting."""
    client = make_client(max_image_pixels=10_000)  # so a batch may hold 160,000 PNG pixels
    page = to_png(np.zeros((100, 100), np.uint8))
    under = client.post("/predict/batch", files=[("files", (f"{i}.png", page)) for i in range(16)])
    assert under.status_code == 200, under.text
    over = client.post("/predict/batch", files=[("files", (f"{i}.png", page)) for i in range(17)])
    assert over.status_code == 413 and code_of(over) == "payload_too_large"
    assert over.json()["error"]["message"] == (
        "the PNG images hold 170,000 pixels together; one request may hold 160,000: send fewer or smaller pictures"
    )


def test_batch_multipart_and_limits(make_client: ClientFactory) -> None:
    client = make_client(max_batch_images=2)
    files = [("files", ("a.png", PNG)), ("files", ("b.png", b"GIF89a"))]
    ok = client.post("/predict/batch", files=files)
    assert ok.status_code == 200, ok.text
    assert [("digit" in p) for p in ok.json()["predictions"]] == [True, False]
    digit = as_json_rows(synthetic_digit())
    many = client.post("/predict/batch", json={"images": [digit] * 3})
    assert many.status_code == 422 and code_of(many) == "too_many_images"
    many_files = client.post("/predict/batch", files=[("files", ("a.png", PNG))] * 3)
    assert many_files.status_code == 422 and code_of(many_files) == "too_many_images"
    shape = client.post("/predict/batch", json={"images": [digit, [[1, 2]]]})
    assert shape.status_code == 422 and "images[1]" in shape.json()["error"]["message"]
    raw = client.post("/predict/batch", content=PNG, headers={"Content-Type": "image/png"})
    assert raw.status_code == 415


def test_a_batch_without_a_model_is_refused_whole_with_retry_after(make_client: ClientFactory) -> None:
    """No version served: the whole batch is 503 model_not_ready, as /predict is, never a 200 whose every entry
    says model_not_ready (or whose blank images name no version)."""
    client = make_client(manager=FakeManager(ready=False, not_ready_reason="loading version 3"))
    pictures = client.post("/predict/batch", files=[("files", ("a.png", PNG)), ("files", ("b.png", PNG))])
    refused_before = rejections()
    blanks = client.post("/predict/batch", json={"images": [[[0] * 28] * 28] * 3})
    # The request is refused, not its images: the refused-input alerts do not see three blank digits.
    assert rejections() == refused_before
    for response in (pictures, blanks):
        assert response.status_code == 503 and code_of(response) == "model_not_ready", response.text
        assert response.json()["error"]["message"] == "loading version 3"
        assert response.headers["Retry-After"]


def test_whole_call_failures_map_to_503_and_504(make_client: ClientFactory) -> None:
    manager = FakeManager(fail_with=QUEUE_FULL)
    client = make_client(manager=manager)
    full = client.post("/predict", json={"image": as_json_rows(synthetic_digit())})
    assert full.status_code == 503 and code_of(full) == "queue_full" and full.headers["Retry-After"] == "2"


def test_unexpected_error_is_a_generic_500(make_client: ClientFactory) -> None:
    manager = FakeManager(fail_with=None)

    async def explode(images: Any) -> Any:
        raise RuntimeError("secret internal detail /etc/passwd")

    manager.predict = explode  # type: ignore[method-assign]
    response = make_client(manager=manager).post("/predict", json={"image": as_json_rows(synthetic_digit())})
    assert response.status_code == 500 and code_of(response) == "internal_error"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.headers.get("x-request-id")


@pytest.mark.parametrize("path", ["/predict/", "/health/live/", "/metrics/", "/v2/", "/models/3/card/"])
def test_a_path_with_a_trailing_slash_is_not_found_not_redirected_to_the_callers_host(
    make_client: ClientFactory, path: str
) -> None:
    response = make_client().request(
        "POST" if path == "/predict/" else "GET", path, headers={"Host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 404 and "location" not in response.headers
    # Under /v2 in the Open Inference Protocol's own form, as every /v2 error is.
    assert response.json() == {"error": "no such endpoint"} if path == "/v2/" else code_of(response) == "not_found"


def test_readiness_answers_from_memory_when_the_registry_cannot_be_read(make_client: ClientFactory) -> None:
    """A hung or slow registry volume must not fail every replica's probe while their models serve from memory."""

    class UnreadableRegistry(FakeManager):
        def status(self) -> dict[str, Any]:
            raise OSError("the registry volume does not answer")

    ready = make_client(manager=UnreadableRegistry()).get("/health/ready")
    assert ready.status_code == 200 and ready.json()["model_version"] == 3


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_health_answers_head_as_uptime_checkers_send_it(make_client: ClientFactory, path: str) -> None:
    response = make_client().head(path)
    assert response.status_code == 200 and response.content == b""  # it was 405


def test_a_multipart_body_cut_before_its_closing_boundary_is_said_to_be_incomplete(make_client: ClientFactory) -> None:
    """The part was sent but the body ended in it: "expected exactly one file part named 'file'" read as a misnaming."""
    head = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    cut = head + to_png(synthetic_digit(7))  # no "\r\n--XyZ--" at the end
    response = make_client().post(
        "/predict", content=cut, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    assert response.status_code == 400 and response.json()["error"]["message"] == (
        "expected exactly one file part named 'file'; none arrived whole (a multipart body ends with its closing "
        "boundary, --BOUNDARY--)"
    )


def test_health_and_routing_errors(make_client: ClientFactory) -> None:
    client = make_client(manager=FakeManager(ready=False, not_ready_reason="loading version 3"))
    assert client.get("/health/live").status_code == 200
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and code_of(ready) == "model_not_ready"
    assert "loading version 3" in ready.json()["error"]["message"]
    assert code_of(client.get("/nowhere")) == "not_found"
    assert client.get("/predict").status_code == 405 and code_of(client.get("/predict")) == "method_not_allowed"
    ok = make_client().get("/health/ready")
    assert ok.status_code == 200 and ok.json() == {
        "status": "ready",
        "model_version": 3,
        "backend": "onnx",
        "device": "cpu",
    }


def test_model_version_must_be_an_integer(make_client: ClientFactory, tmp_path: Any) -> None:

    client = make_client(manager=FakeManager(registry=Registry(tmp_path)))
    for bad in ("abc", "0", "-1", "..%2F..%2Fetc", "1.5"):
        response = client.get(f"/models/{bad}")
        assert response.status_code in (404, 422), bad
        assert code_of(response) in {"invalid_version", "not_found"}
    missing = client.get("/models/42")
    assert missing.status_code == 404 and code_of(missing) == "version_not_found"
    assert client.get("/models").json()["model_version"] == 3


def test_admin_routes_exist_only_with_a_token(make_client: ClientFactory) -> None:
    assert make_client().post("/admin/reload").status_code == 404
    manager = FakeManager()
    client = make_client(manager=manager, admin_token=TOKEN)
    assert code_of(client.post("/admin/reload")) == "unauthorized"
    assert client.post("/admin/reload").headers["WWW-Authenticate"] == "Bearer"
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and code_of(wrong) == "forbidden"
    ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"model_version": 3} and manager.reloads == [None]
    bad_alias = client.post(
        "/admin/promote", json={"version": 1, "alias": "../../x"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert bad_alias.status_code == 409 and code_of(bad_alias) == "alias_error"
    extra = client.post("/admin/reload", json={"version": 1, "x": 1}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert extra.status_code == 422 and code_of(extra) == "invalid_input"


def test_admin_routes_check_the_token_before_the_body_and_read_it_as_strictly_as_predict(
    make_client: ClientFactory,
) -> None:
    manager = FakeManager()
    client = make_client(manager=manager, admin_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    json_body = {"Content-Type": "application/json"}
    # Without the token, nothing about the body is told: a malformed one is refused for the token, like any other.
    for path in ("/admin/reload", "/admin/promote", "/admin/rollback"):
        anonymous = client.post(path, content=b"{bad", headers=json_body)
        assert anonymous.status_code == 401 and code_of(anonymous) == "unauthorized", path
    malformed = client.post("/admin/reload", content=b"{bad", headers={**auth, **json_body})
    assert malformed.status_code == 400 and code_of(malformed) == "invalid_json"
    assert malformed.json()["error"]["message"].startswith("malformed JSON at line 1 column 2")
    for version in (True, "1", 1.5, 0, 1_000_000_000):  # 1..999999999, as version folders are named
        loose = client.post("/admin/reload", json={"version": version}, headers=auth)
        assert loose.status_code == 422 and code_of(loose) == "invalid_input", version
        promote = client.post("/admin/promote", json={"version": version}, headers=auth)
        assert promote.status_code == 422 and code_of(promote) == "invalid_input", version
    assert manager.reloads == []
    said = client.post("/admin/reload", json={"version": "2"}, headers=auth).json()["error"]["message"]
    assert said == "version: must be a JSON integer, not a string or a boolean"  # pydantic's "Value error, " left out
    # 2.0 is an integer to JSON Schema (the OpenAPI document's "integer"), so it is one here too.
    assert client.post("/admin/reload", json={"version": 2.0}, headers=auth).status_code == 200
    assert manager.reloads == [2]
    text = client.post("/admin/reload", content=b"1", headers={**auth, "Content-Type": "text/plain"})
    assert text.status_code == 415 and text.json()["error"]["message"].endswith("use one of application/json")


def test_a_rollback_that_lands_while_another_is_load_checked_moves_no_alias_to_an_unchecked_version(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """Two rollbacks at once: each checked that version 2 loads, one moved production 3 -> 2, and the other then
    moved it on to 1, which nobody had checked (an unloadable version, served by no replica following the alias)."""
    registry = promoted_versions(tmp_path / "models", [b"v1", b"v2", b"v3"])
    manager = FakeManager(registry=registry)
    checked: list[int] = []

    async def check_loads(version: int) -> None:
        checked.append(version)
        registry.rollback()  # the other caller's rollback lands meanwhile

    manager.check_loads = check_loads  # type: ignore[method-assign]
    client = make_client(manager=manager, admin_token=TOKEN)
    answer = client.post("/admin/rollback", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 409 and code_of(answer) == "alias_error", answer.text
    assert "changed meanwhile" in answer.json()["error"]["message"]
    assert checked == [2] and registry.aliases()["production"] == 2  # the other caller's move, and no more


def test_openapi_documents_all_three_input_forms(make_client: ClientFactory) -> None:
    schema = make_client().get("/openapi.json").json()
    content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data", "image/png", "image/jpeg"}
    assert "example" in content["application/json"]
    assert "/predict/batch" in schema["paths"] and "/health/ready" in schema["paths"]


def test_an_answer_holds_the_model_values_rounded_to_six_decimals() -> None:
    """Confidence and probabilities rounded as round() rounds them, six decimals each (two for a confidence
    given alone); a broken model's NaN or infinity fails the answer instead of being written as null."""
    import numpy as np

    from service.api.routes_predict import prediction_answer
    from service.errors import InferenceError
    from service.inference.answers import Prediction

    rng = np.random.default_rng(7)
    rows = [rng.dirichlet(np.full(10, alpha)).astype(np.float32).tolist() for alpha in (0.05, 0.3, 5.0)]
    rows.append([1.0] + [0.0] * 9)
    rows.append([1e-9, 0.9999995, 5e-05, 0.0049995, *[5e-8] * 6])  # round to 0, to 1, tiny, and a near-tie
    for probabilities in rows:
        digit = int(np.argmax(probabilities))
        prediction = Prediction(digit, probabilities[digit], probabilities, 12)
        assert prediction_answer(prediction, Settings(return_probabilities=True)) == {
            "digit": digit,
            "confidence": round(probabilities[digit], 6),
            "probabilities": [round(p, 6) for p in probabilities],
            "model_version": 12,
        }
        alone = prediction_answer(prediction, Settings(return_probabilities=False))
        assert alone == {"digit": digit, "confidence": round(probabilities[digit], 2), "model_version": 12}

    # Only what is written must be finite: withheld probabilities do not fail an answer.
    withheld = Prediction(3, 0.9, [float("-inf"), 0.05, 0.05, 0.9, *[0.0] * 6], 1)
    assert prediction_answer(withheld, Settings(return_probabilities=False))["confidence"] == 0.9

    for bad in (float("nan"), float("inf")):
        broken = Prediction(3, 0.5, [0.1, 0.2, 0.3, bad, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1)
        with pytest.raises(InferenceError, match="non-finite"):
            prediction_answer(broken, Settings(return_probabilities=True))


def test_batch_image_parts_decode_side_by_side_and_reach_the_model_in_one_call(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each decode waits until the other has started: one after the other, the barrier would break. The parts are
    # 28x28 PNGs, which a single-image request decodes on the event loop: several still go to the pool side by side.
    both_decoding = threading.Barrier(2, timeout=5)

    def decode_when_both_started(data: bytes, **facts: Any) -> Any:
        both_decoding.wait()
        return api_fakes.fake_image_to_mnist(data, **facts)

    monkeypatch.setattr(decoder.normalise, "image_to_mnist", decode_when_both_started)
    manager = FakeManager()
    small_png = to_png(synthetic_digit())
    parts = [("files", (f"{i}.png", small_png)) for i in range(2)]
    response = make_client(manager).post("/predict/batch", files=parts)
    assert response.status_code == 200, response.text
    assert [p["digit"] for p in response.json()["predictions"]] == [7, 7]
    assert manager.calls == [2]
