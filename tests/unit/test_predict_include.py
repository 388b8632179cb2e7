"""``?include=input``: the normalised 28x28 added to an answer on request, documented, refused when unknown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest
from starlette.testclient import TestClient

from digits.softening import soften
from registry import Preprocessing
from registry.metadata import UNRECORDED_SOFTENING
from service.api import routes_predict
from tests.helpers import as_json_rows, synthetic_digit
from tests.unit.api_fakes import PNG_MAGIC, FakeManager

PNG = PNG_MAGIC + b"rest-of-a-png"
ClientFactory = Callable[..., TestClient]


def as_given(image: np.ndarray) -> list[list[int]]:
    """What the model is given for ``image``: softened as every input is (the fake's version records no softening,
    so the one versions had before the field), in whole numbers."""
    soft = soften(np.asarray(image, dtype=np.float32)[np.newaxis], UNRECORDED_SOFTENING)[0]
    return np.rint(soft).astype(int).tolist()


def fake_decoded() -> list[list[int]]:
    """What api_fakes.fake_image_to_mnist makes of any PNG (a bar of ink in columns 13..15), as the model gets it."""
    image = np.zeros((28, 28), dtype=int)
    image[4:24, 13:16] = 255
    return as_given(image)


def test_without_include_the_answer_is_unchanged(make_client: ClientFactory) -> None:
    body = make_client().post("/predict", content=PNG, headers={"Content-Type": "image/png"}).json()
    assert set(body) == {"digit", "confidence", "probabilities", "model_version"}


@pytest.mark.parametrize("query", ["include=input", "include=input,input", "include=input&include=input"])
def test_include_input_adds_the_normalised_28x28_as_whole_numbers(make_client: ClientFactory, query: str) -> None:
    body = make_client().post(f"/predict?{query}", content=PNG, headers={"Content-Type": "image/png"}).json()
    assert body["digit"] == 7 and len(body["probabilities"]) == 10
    assert body["input"] == fake_decoded()


def test_include_input_gives_a_json_digit_back_as_the_model_got_it(make_client: ClientFactory) -> None:
    image = synthetic_digit(7).astype(float)
    image[5, 5] = 254.6  # a fraction: the answer's numbers are whole
    body = make_client().post("/predict?include=input", json={"image": image.tolist()}).json()
    assert body["input"] == as_given(image)
    assert body["input"] != as_json_rows(synthetic_digit(7))  # softened, not the digit as sent
    assert all(isinstance(v, int) for row in body["input"] for v in row)


def test_include_input_without_probabilities_keeps_the_withheld_answer(make_client: ClientFactory) -> None:
    client = make_client(return_probabilities=False)
    body = client.post("/predict?include=input", content=PNG, headers={"Content-Type": "image/png"}).json()
    assert set(body) == {"digit", "confidence", "model_version", "input"}


# An empty or padded value too: the schema's enum is exactly what the server takes (the contract test checks it).
@pytest.mark.parametrize(
    "query",
    [
        "include=inputs",
        "include=input,probabilities",
        "include=%3Cscript%3E",
        "include=",
        "include=input,",
        "include=+input",
    ],
)
def test_an_unknown_include_is_refused_before_the_body_is_read(make_client: ClientFactory, query: str) -> None:
    manager = FakeManager()
    response = make_client(manager).post(f"/predict?{query}", content=PNG, headers={"Content-Type": "image/png"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_include"
    assert "the only one is 'input'" in error["message"]
    assert manager.calls == [], "the model ran for a request refused by its query"


def test_other_query_parameters_are_still_ignored(make_client: ClientFactory) -> None:
    response = make_client().post("/predict?utm_source=x", content=PNG, headers={"Content-Type": "image/png"})
    assert response.status_code == 200 and "input" not in response.json()


def test_batch_answers_carry_each_input_and_refused_images_none(make_client: ClientFactory) -> None:
    files = [("files", ("a.png", PNG, "image/png")), ("files", ("b.png", PNG + b"BLANK", "image/png"))]
    body = make_client().post("/predict/batch?include=input", files=files).json()
    first, second = body["predictions"]
    assert first["input"] == fake_decoded()
    assert set(second) == {"error"} and second["error"]["code"] == "no_digit"
    refused = make_client().post("/predict/batch?include=nope", files=files)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_include"


def test_openapi_documents_include_on_both_prediction_routes(make_client: ClientFactory) -> None:
    schema = make_client().get("/openapi.json").json()
    for path in ("/predict", "/predict/batch"):
        (parameter,) = schema["paths"][path]["post"]["parameters"]
        assert parameter["name"] == "include" and parameter["in"] == "query" and not parameter["required"]
        assert parameter["schema"]["items"]["enum"] == ["input"]
    answer = schema["components"]["schemas"]["PredictionOut"]["properties"]["input"]
    assert "include=input" in answer["description"]


def test_a_request_without_a_query_string_skips_the_query_parse() -> None:
    """The JSON fast path stays fast: no query string, no parse (``query_params`` is never built)."""

    class NoQueryParse:
        scope: ClassVar[dict[str, bytes]] = {"query_string": b""}

        @property
        def query_params(self) -> Any:
            raise AssertionError("parsed a query string that was not there")

    assert routes_predict.requested_includes(NoQueryParse()) == frozenset()  # type: ignore[arg-type]


class SwappingManager(FakeManager):
    """A manager whose served version changes, to one of another softening, while an answer is computed."""

    softening: float = UNRECORDED_SOFTENING

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(pixel_scale=1 / 255, canvas=28, digit_box=20, softening=self.softening)

    async def predict(self, images: np.ndarray) -> list[Any]:
        answers = await super().predict(images)
        self.softening = 2.0  # a hot swap lands while the answer travels back
        return answers


@pytest.mark.parametrize("route", ["/predict", "/predict/batch"])
def test_include_input_shows_what_the_answering_version_was_given(make_client: ClientFactory, route: str) -> None:
    image = synthetic_digit(7)
    body = {"image": image.tolist()} if route == "/predict" else {"images": [image.tolist()]}
    answer = make_client(SwappingManager()).post(f"{route}?include=input", json=body).json()
    shown = answer["input"] if route == "/predict" else answer["predictions"][0]["input"]
    assert shown == as_given(image)  # softened at the answering version's 0.7, not the next version's 2.0
