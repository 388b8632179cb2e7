"""The hostile corpus through HTTP, against ONE real server (tiny model), with its memory watched.

Every hostile case must get a 4xx JSON envelope with a stable code, no traceback and no echo of its
input, within a few seconds. Over the whole run the server's RSS may grow by at most 200 MiB, and
afterwards it still answers real digits as it did before. The decode-level corpus lives in
tests/unit/input_corpus.py; this module adds what only exists at the HTTP level (bodies, headers,
multipart, paths, auth). Tests run in file order: the memory and digit checks come last.
"""

# ruff: noqa: E501  (the attack tables read best as one case per line)
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import ServerHandle, running_server
from tests.helpers import as_json_rows, raw_http, real_digits, to_png
from tests.unit.input_corpus import HOSTILE_IMAGES, HOSTILE_JSON, Case

ADMIN_TOKEN = "hostile-run-admin-token-0123456789"
ANSWER_WITHIN_S = 5.0
MAX_ANSWER_BYTES = 2048  # an error that echoed its input would be far larger
MAX_RSS_GROWTH = 200 * 1024 * 1024
MAX_BATCH_IMAGES = 256  # the default MNIST_MAX_BATCH_IMAGES
GUARD_CODES = {"not_a_digit", "suspected_adversarial"}  # what a valid but odd image may still get
# Python internals that must never reach a client: tracebacks, file paths, exception reprs.
LEAK = re.compile(r'Traceback|File "|\b\w+(Error|Exception): |site-packages|\.py\b')

# What the HTTP path answers where it differs from the decode-level corpus, and why.
IMAGE_CODES_OVER_HTTP = {"empty": "invalid_image"}  # an empty upload is refused before format sniffing
JSON_CODES_OVER_HTTP = {
    # json.dumps writes NaN/Infinity literals, which the JSON parser refuses before validation.
    "nan": "invalid_json",
    "infinity": "invalid_json",
    "minus_infinity": "invalid_json",
    # 10,000 levels pass the byte cap but not the parser's nesting limit (1,024).
    "deeply_nested": "invalid_json",
    # A number past a double's range is refused by the parser (orjson), before any range check.
    "huge_int": "invalid_json",
}


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    elapsed_s: float


@dataclass
class Run:
    """The one server of this module and what it looked like before the hostile run."""

    server: ServerHandle
    client: httpx.Client
    rss_before: int
    digits_before: list[Any]


@pytest.fixture(scope="module")
def run(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    log_dir = tmp_path_factory.mktemp("hostile")
    with (
        running_server(log_dir, {"MNIST_ADMIN_TOKEN": ADMIN_TOKEN}, registry=tiny_registry) as server,
        httpx.Client(base_url=server.base_url, timeout=15) as client,
    ):
        before = digit_answers(client)  # also the warm-up: first-use allocations are not the corpus' fault
        yield Run(server, client, rss(server), before)


def rss(server: ServerHandle) -> int:
    return psutil.Process(server.process.pid).memory_info().rss


def digit_answers(client: httpx.Client) -> list[Any]:
    images, _ = real_digits(20)
    response = client.post("/predict/batch", json={"images": [as_json_rows(i) for i in images]})
    assert response.status_code == 200, response.text
    return [p.get("digit", p.get("error", {}).get("code")) for p in response.json()["predictions"]]


def timed(send: Callable[[], httpx.Response]) -> Answer:
    began = time.monotonic()
    response = send()
    return Answer(response.status_code, response.text, time.monotonic() - began)


def check_refused(answer: Answer, code: str, status: int | None = None) -> None:
    """A 4xx envelope with ``code``, quick, small, nothing internal in it."""
    assert answer.elapsed_s < ANSWER_WITHIN_S, f"took {answer.elapsed_s:.2f} s"
    assert not LEAK.search(answer.text), answer.text[:300]
    assert len(answer.text) <= MAX_ANSWER_BYTES, f"{len(answer.text)} bytes: input echoed? {answer.text[:200]}"
    assert 400 <= answer.status < 500, (answer.status, answer.text[:300])
    body = json.loads(answer.text)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    if status is not None:
        assert answer.status == status, (answer.status, body)


def check_accepted(answer: Answer) -> None:
    """A valid (if odd) input: a prediction, or a guard's refusal; never a decoding error."""
    assert answer.elapsed_s < ANSWER_WITHIN_S and not LEAK.search(answer.text)
    if answer.status == 200:
        assert 0 <= json.loads(answer.text)["digit"] <= 9
    else:
        check_refused(answer, json.loads(answer.text)["error"]["code"], 422)
        assert json.loads(answer.text)["error"]["code"] in GUARD_CODES, answer.text


def image_type(data: bytes) -> str:
    """The declared type: PNG or JPEG by magic, else image/png (a lie the server must see through)."""
    return "image/jpeg" if data.startswith(b"\xff\xd8") else "image/png"


# ---- the decode-level corpus, through every image and JSON entry point --------------------------------


@pytest.mark.parametrize("case", HOSTILE_IMAGES, ids=lambda c: c.name)
def test_image_corpus_as_multipart(run: Run, case: Case) -> None:
    data = case.payload()
    assert isinstance(data, bytes)
    answer = timed(lambda: run.client.post("/predict", files={"file": ("x", data, image_type(data))}))
    code = IMAGE_CODES_OVER_HTTP.get(case.name, case.expect)
    check_accepted(answer) if code == "ok" else check_refused(answer, code)


@pytest.mark.parametrize("case", HOSTILE_IMAGES, ids=lambda c: c.name)
def test_image_corpus_as_raw_body(run: Run, case: Case) -> None:
    data = case.payload()
    assert isinstance(data, bytes)
    answer = timed(lambda: run.client.post("/predict", content=data, headers={"Content-Type": image_type(data)}))
    code = IMAGE_CODES_OVER_HTTP.get(case.name, case.expect)
    check_accepted(answer) if code == "ok" else check_refused(answer, code)


def json_text(case: Case, wrap: str) -> bytes:
    """``{"<wrap>": payload}``; the deep case is written by hand (json.dumps itself would recurse too deep)."""
    inner = "[" * 10_000 + "0" + "]" * 10_000 if case.name == "deeply_nested" else json.dumps(case.payload())
    return f'{{"{wrap}": {inner}}}'.encode()


@pytest.mark.parametrize("case", HOSTILE_JSON, ids=lambda c: c.name)
def test_json_corpus_on_predict(run: Run, case: Case) -> None:
    body = json_text(case, "image")
    answer = timed(lambda: run.client.post("/predict", content=body, headers={"Content-Type": "application/json"}))
    code = JSON_CODES_OVER_HTTP.get(case.name, case.expect)
    check_accepted(answer) if code == "ok" else check_refused(answer, code)


@pytest.mark.parametrize("case", HOSTILE_JSON, ids=lambda c: c.name)
def test_json_corpus_wrapped_in_a_batch(run: Run, case: Case) -> None:
    """Shape errors fail the whole batch; a blank image is its own error entry in a 200 answer."""
    if case.name == "deeply_nested":
        body = b'{"images": [' + b"[" * 10_000 + b"0" + b"]" * 10_000 + b"]}"
    else:
        body = json.dumps({"images": [case.payload()]}).encode()
    headers = {"Content-Type": "application/json"}
    answer = timed(lambda: run.client.post("/predict/batch", content=body, headers=headers))
    code = JSON_CODES_OVER_HTTP.get(case.name, case.expect)
    if code in {"ok", "no_digit"}:
        assert answer.status == 200 and answer.elapsed_s < ANSWER_WITHIN_S, answer.text[:300]
        (entry,) = json.loads(answer.text)["predictions"]
        assert "digit" in entry if code == "ok" else entry["error"]["code"] in {code, *GUARD_CODES}, entry
    else:
        check_refused(answer, code)


# ---- what only exists at the HTTP level ---------------------------------------------------------------


def _digit_png() -> bytes:
    return to_png(real_digits(1)[0][0])


def _digit_rows() -> list[list[int]]:
    return as_json_rows(real_digits(1)[0][0])


def _post(path: str, **kwargs: Any) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(path, **kwargs)


def _json_bytes(body: bytes) -> Callable[[httpx.Client], httpx.Response]:
    return _post("/predict", content=body, headers={"Content-Type": "application/json"})


def _multipart(parts_head: str, payload: bytes, boundary: str = "bnd") -> Callable[[httpx.Client], httpx.Response]:
    body = f"--{boundary}\r\n{parts_head}\r\n\r\n".encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return _post("/predict", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def _thirty_mb_chunks() -> Iterator[bytes]:
    piece = b" " * 65536
    for _ in range(30 * 16):
        yield piece


HTTP_ATTACKS: list[tuple[str, Callable[[httpx.Client], httpx.Response], str, int]] = [
    ("chunked_30mb_without_length", _post("/predict", content=_thirty_mb_chunks(), headers={"Content-Type": "application/json"}), "payload_too_large", 413),
    ("content_type_text_plain", _post("/predict", content=b"7", headers={"Content-Type": "text/plain"}), "unsupported_media_type", 415),
    ("content_type_xml", _post("/predict", content=b"<a/>", headers={"Content-Type": "application/xml"}), "unsupported_media_type", 415),
    ("content_type_multipart_mixed", _post("/predict", content=b"--x\r\n\r\n--x--", headers={"Content-Type": "multipart/mixed; boundary=x"}), "unsupported_media_type", 415),
    ("content_type_missing", _post("/predict", content=b"{}", headers={"Content-Type": ""}), "unsupported_media_type", 415),
    ("encoding_gzip", _post("/predict", content=b"\x1f\x8b", headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}), "unsupported_encoding", 415),
    ("encoding_br", _post("/predict", content=b"\x0b", headers={"Content-Type": "application/json", "Content-Encoding": "br"}), "unsupported_encoding", 415),
    ("encoding_deflate", _post("/predict", content=b"x\x9c", headers={"Content-Type": "image/png", "Content-Encoding": "deflate"}), "unsupported_encoding", 415),
    ("multipart_two_file_parts", lambda c: c.post("/predict", files=[("file", ("a.png", _digit_png(), "image/png"))] * 2), "too_many_images", 422),
    ("multipart_1000_file_parts", lambda c: c.post("/predict", files=[("file", ("a.png", b"\x89PNG", "image/png"))] * 1000), "too_many_images", 422),
    ("multipart_1000_fields", lambda c: c.post("/predict", data={f"f{i}": "x" for i in range(1000)}, files={"file": ("a.png", _digit_png(), "image/png")}), "invalid_multipart", 400),
    ("multipart_100kb_part_header", _multipart('Content-Disposition: form-data; name="file"; filename="a.png"\r\nX-Pad: ' + "a" * 100_000, b"\x89PNG"), "invalid_multipart", 400),
    ("multipart_wrong_field_name", lambda c: c.post("/predict", files={"upload": ("a.png", _digit_png(), "image/png")}), "invalid_multipart", 400),
    ("multipart_no_boundary", _post("/predict", content=b"--x--", headers={"Content-Type": "multipart/form-data"}), "invalid_multipart", 400),
    ("batch_max_plus_one_json", lambda c: c.post("/predict/batch", json={"images": [_digit_rows()] * (MAX_BATCH_IMAGES + 1)}), "too_many_images", 422),
    ("batch_max_plus_one_multipart", lambda c: c.post("/predict/batch", files=[("files", ("a.png", b"\x89PNG", "image/png"))] * (MAX_BATCH_IMAGES + 1)), "too_many_images", 422),
    ("batch_empty", lambda c: c.post("/predict/batch", json={"images": []}), "invalid_input", 422),
    ("json_nested_100k_deep", _json_bytes(b"[" * 100_000 + b"]" * 100_000), "invalid_json", 400),
    ("json_image_nested_100k_deep", _json_bytes(b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), "invalid_json", 400),
    ("json_3mb_array", _json_bytes(b"[" + b"0," * 1_500_000 + b"0]"), "invalid_input", 422),
    ("json_3mb_image_rows", _json_bytes(b'{"image": [' + b"0," * 1_500_000 + b"0]}"), "invalid_input", 422),
    ("json_nan_literal", _json_bytes(b'{"image": NaN}'), "invalid_json", 400),
    ("json_infinity_literal", _json_bytes(b'{"image": [[-Infinity]]}'), "invalid_json", 400),
    ("json_extra_field", lambda c: c.post("/predict", json={"image": _digit_rows(), "label": 7}), "invalid_input", 422),
    ("json_batch_extra_field", lambda c: c.post("/predict/batch", json={"images": [_digit_rows()], "x": 1}), "invalid_input", 422),
    ("json_not_utf8", _json_bytes(b'{"image": "\xff\xfe"}'), "invalid_json", 400),
    ("json_empty_body", _json_bytes(b""), "invalid_json", 400),
    ("admin_reload_without_token", _post("/admin/reload"), "unauthorized", 401),
    ("admin_promote_wrong_token", _post("/admin/promote", json={"version": 1}, headers={"Authorization": "Bearer " + "x" * 34}), "forbidden", 403),
    ("admin_rollback_basic_auth", _post("/admin/rollback", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}), "unauthorized", 401),
    ("admin_reload_token_prefix", _post("/admin/reload", headers={"Authorization": "Bearer " + ADMIN_TOKEN[:-1]}), "forbidden", 403),
    ("models_encoded_traversal", lambda c: c.get("/models/..%2F..%2Fetc%2Fpasswd"), "not_found", 404),
    ("models_dotdot", lambda c: c.get("/models/%2e%2e"), "invalid_version", 422),
    ("models_exponent", lambda c: c.get("/models/1e3"), "invalid_version", 422),
    ("models_negative", lambda c: c.get("/models/-1"), "invalid_version", 422),
    ("models_zero", lambda c: c.get("/models/0"), "invalid_version", 422),
    ("models_huge", lambda c: c.get("/models/" + "9" * 40), "invalid_version", 422),
    ("models_unknown_version", lambda c: c.get("/models/999999"), "version_not_found", 404),
    ("predict_get", lambda c: c.get("/predict"), "method_not_allowed", 405),
]  # fmt: skip


@pytest.mark.parametrize(("name", "send", "code", "status"), HTTP_ATTACKS, ids=[a[0] for a in HTTP_ATTACKS])
def test_http_attack(run: Run, name: str, send: Callable[[httpx.Client], httpx.Response], code: str, status: int):
    check_refused(timed(lambda: send(run.client)), code, status)


# Requests httpx will not send as written: lying lengths, literal dot segments.
RAW_ATTACKS: list[tuple[str, str, bytes, str, int]] = [
    ("declared_30mb", "POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 31457280", b"[" * 65536, "payload_too_large", 413),
    ("declared_30mb_image", "POST /predict HTTP/1.1\r\nContent-Type: image/png\r\nContent-Length: 31457280", b"\x89PNG\r\n\x1a\n" + b"\x00" * 65536, "payload_too_large", 413),
    ("missing_content_length", "POST /predict HTTP/1.1\r\nContent-Type: application/json", b'{"image": [[0]]}', "invalid_json", 400),
    ("content_length_shorter_than_body", "POST /predict HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 10", b'{"image": [[' + b"0," * 5000, "invalid_json", 400),
    ("literal_dot_segments", "GET /models/../../etc/passwd HTTP/1.1", b"", "not_found", 404),
    ("literal_dot_segments_version", "GET /models/..%2f..%2fetc%2fpasswd HTTP/1.1", b"", "not_found", 404),
]  # fmt: skip


@pytest.mark.parametrize(("name", "head", "body", "code", "status"), RAW_ATTACKS, ids=[a[0] for a in RAW_ATTACKS])
def test_raw_attack(run: Run, name: str, head: str, body: bytes, code: str, status: int) -> None:
    lines = head.split("\r\n")
    full = "\r\n".join([lines[0], "Host: test", "Connection: close", *lines[1:]])
    reply = raw_http(run.server.base_url, full, body, timeout=10)
    check_refused(Answer(reply.status, reply.body.decode(errors="replace"), reply.elapsed_s), code, status)


@pytest.mark.parametrize(
    "bad_header", ["Content-Length: abc", "Content-Length: 5\r\nContent-Length: 6", "Transfer-Encoding: gzip"]
)
def test_malformed_framing_is_refused_by_the_http_parser(run: Run, bad_header: str) -> None:
    """h11 refuses broken framing before the app runs: a plain-text 400 (not our envelope), nothing leaked."""
    reply = raw_http(run.server.base_url, f"POST /predict HTTP/1.1\r\nHost: t\r\n{bad_header}", b"{}", timeout=10)
    assert reply.status == 400 and reply.closed and reply.elapsed_s < ANSWER_WITHIN_S
    assert not LEAK.search(reply.body.decode(errors="replace")) and len(reply.body) < MAX_ANSWER_BYTES


def test_uploaded_file_name_is_ignored(run: Run) -> None:
    """A path-traversal file name neither fails the request nor comes back in the answer."""
    name = "../../../../etc/passwd"
    answer = timed(lambda: run.client.post("/predict", files={"file": (name, _digit_png(), "image/png")}))
    check_accepted(answer)
    assert "passwd" not in answer.text


# ---- after the run: memory and real digits ---------------------------------------------------------------


def test_memory_growth_is_bounded(run: Run) -> None:
    grown = rss(run.server) - run.rss_before
    print(f"server RSS before {run.rss_before / 2**20:.1f} MiB, growth {grown / 2**20:+.1f} MiB")
    assert grown <= MAX_RSS_GROWTH, f"RSS grew by {grown / 2**20:.1f} MiB over the hostile run"


def test_real_digits_still_answered(run: Run) -> None:
    """The same answers as before the run (the model is deterministic), and most of them right."""
    after = digit_answers(run.client)
    assert after == run.digits_before
    _, labels = real_digits(20)
    right = sum(answer == int(label) for answer, label in zip(after, labels, strict=True))
    assert right >= 15, f"{right}/20 real digits right: {after} vs {labels.tolist()}"
    # One through the plain single-image path too.
    index = next(i for i, (a, y) in enumerate(zip(after, labels, strict=True)) if a == int(y))
    response = run.client.post(
        "/predict", content=to_png(real_digits(20)[0][index]), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200 and response.json()["digit"] == int(labels[index])
