"""The API contract as a client reads it: /docs served by the service itself, and an OpenAPI document that
promises no more than the server accepts and names every error answer it can give."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from service import errors as svc
from service.api.errors import REGISTRY_ERRORS, describe, speaks_oip
from service.api.routes_docs import SWAGGER_DIR
from tests.helpers import as_json_rows, synthetic_digit
from tests.unit.api_fakes import FakeManager

ClientFactory = Callable[..., TestClient]
METHODS = {"get", "post", "put", "patch", "delete"}
TOKEN = "contract-admin-token-0123"


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in document["paths"].items() for m, op in item.items() if m in METHODS]


# ---- /docs ----------------------------------------------------------------------------------------------


def test_docs_page_and_every_file_it_loads_come_from_the_service_under_a_strict_csp(make_client: ClientFactory) -> None:
    client = make_client()
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "an inline script would need 'unsafe-inline'"
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert loaded and all(url.startswith("/docs/assets/") for url in loaded), loaded
    for url in loaded:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
        assert asset.headers["content-security-policy"] == csp, url
    assert client.get("/openapi.json").status_code == 200


def test_swagger_ui_is_told_to_fetch_nothing_from_elsewhere() -> None:
    initialiser = (SWAGGER_DIR / "swagger-init.js").read_text(encoding="utf-8")
    assert re.search(r"^\s*validatorUrl: null,", initialiser, re.M), "Swagger UI would fetch validator.swagger.io"
    assert 'url: "/openapi.json"' in initialiser
    assert not re.search(r"https?://", initialiser.replace("validator.swagger.io", ""))


def test_mnist_docs_false_removes_the_docs_and_the_schema_but_not_the_api(make_client: ClientFactory) -> None:
    client = make_client(docs=False)
    for path in ("/docs", "/docs/assets/swagger-ui-bundle.js", "/openapi.json", "/redoc"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", path
    assert client.post("/predict", json={"image": as_json_rows(synthetic_digit())}).status_code == 200


def test_fastapis_cdn_pages_are_gone(make_client: ClientFactory) -> None:
    client = make_client()
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/oauth2-redirect").status_code == 404
    assert "cdn.jsdelivr.net" not in client.get("/docs").text


# ---- the schema -----------------------------------------------------------------------------------------


@pytest.fixture()
def document(make_client: ClientFactory) -> dict[str, Any]:
    return make_client(admin_token=TOKEN, max_batch_images=7).get("/openapi.json").json()


def test_version_path_parameter_has_the_registrys_bounds(document: dict[str, Any]) -> None:
    (parameter,) = document["paths"]["/models/{version}"]["get"]["parameters"]
    assert parameter["schema"]["type"] == "integer" and parameter["schema"]["minimum"] == 1
    assert parameter["schema"]["maximum"] == 999_999_999


def test_batches_are_bounded_by_the_running_servers_limit(document: dict[str, Any]) -> None:
    content = document["paths"]["/predict/batch"]["post"]["requestBody"]["content"]
    images = content["application/json"]["schema"]["properties"]["images"]
    files = content["multipart/form-data"]["schema"]["properties"]["files"]
    for array in (images, files):
        assert (array["minItems"], array["maxItems"]) == (1, 7), array
    assert "x-max-items-from" not in str(document)


def test_a_json_image_is_28_rows_of_28_numbers_0_to_255(document: dict[str, Any]) -> None:
    image = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    rows = image["properties"]["image"]
    assert (rows["minItems"], rows["maxItems"]) == (28, 28)
    assert (rows["items"]["minItems"], rows["items"]["maxItems"]) == (28, 28)
    assert rows["items"]["items"] == {"type": "number", "minimum": 0, "maximum": 255}
    assert image["additionalProperties"] is False and image["required"] == ["image"]


def test_every_answer_documents_x_request_id_and_every_503_retry_after(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            assert headers.get("X-Request-ID", {}).get("required") is True, (method, path, status)
            if status == "503":
                assert headers["Retry-After"]["required"] is True, (method, path)


def test_every_error_answer_is_the_envelope_with_codes_the_error_table_gives_that_status(
    document: dict[str, Any],
) -> None:
    """Each operation's 4xx/5xx answers name their codes, and the error table answers each code with that status."""
    domain = [c for c in vars(svc).values() if isinstance(c, type) and issubclass(c, svc.ServiceError)]
    status_of = {describe(error("x"))[1]: describe(error("x"))[0] for error in domain}
    status_of.update({code: status for status, code in REGISTRY_ERRORS.values()})
    status_of["internal_error"] = 500
    assert "HTTPValidationError" not in str(document)
    for method, path, operation in operations(document):
        errors = {s: r for s, r in operation["responses"].items() if int(s) >= 400}
        assert "500" in errors, (method, path)
        if "requestBody" in operation:
            assert {"408", "413", "415"} <= set(errors), (method, path)
        if speaks_oip(path):  # the protocol's own error shape: a bare message, no code
            oip_error = {"$ref": "#/components/schemas/OipErrorOut"}
            assert all(r["content"]["application/json"]["schema"] == oip_error for r in errors.values()), path
            continue
        for status, response in errors.items():
            codes = response["x-error-codes"]
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
            assert sorted(response["content"]["application/json"]["examples"]) == sorted(codes)
            wrong = {code: status_of[code] for code in codes if status_of[code] != int(status)}
            assert not wrong, (method, path, status, wrong)


def test_the_prediction_routes_document_the_content_level_refusals(document: dict[str, Any]) -> None:
    single = document["paths"]["/predict"]["post"]["responses"]
    assert {"no_digit", "not_a_digit", "suspected_adversarial"} <= set(single["422"]["x-error-codes"])
    assert "invalid_image" in single["400"]["x-error-codes"]
    assert "unsupported_image_format" in single["415"]["x-error-codes"]
    batch = document["paths"]["/predict/batch"]["post"]["responses"]
    assert "too_many_images" in batch["422"]["x-error-codes"]


def test_a_503_answers_with_retry_after_whatever_its_cause(make_client: ClientFactory) -> None:
    manager = FakeManager(fail_with=svc.ModelNotReady("the model is loading"))
    response = make_client(manager).post("/predict", json={"image": as_json_rows(synthetic_digit())})
    assert response.status_code == 503 and response.json()["error"]["code"] == "model_not_ready"
    assert int(response.headers["Retry-After"]) >= 1


def test_a_body_fastapi_cannot_read_is_refused_with_the_documented_invalid_json(make_client: ClientFactory) -> None:
    """The admin routes' bodies are parsed by FastAPI: bytes that are not UTF-8 get our code, not a bare 400."""
    client = make_client(admin_token=TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    response = client.post("/admin/reload", content=b"\xff\xfe{", headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    documented = client.get("/openapi.json").json()["paths"]["/admin/reload"]["post"]["responses"]["400"]
    assert "invalid_json" in documented["x-error-codes"]
