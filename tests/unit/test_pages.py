"""The browser pages over HTTP (fake model manager, real registry on disk): the pad's files, the model card
page and its plots, the page headers, MNIST_UI and MNIST_CORS_ORIGINS. The browser itself is tests/browser/."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from registry import FileNotPublished, Registry, layout
from service.api.routes_pages import PAGES_DIR
from service.metrics import REQUESTS
from service.settings import Settings
from tests.helpers import as_json_rows, model_facts, synthetic_digit, to_png
from tests.unit.api_fakes import FakeManager

ROOT = Path(__file__).resolve().parents[2]
PAGE_BUDGET_BYTES = 50 * 1024
TEST_HOOKS = ("pad", "digit", "message", "clear", "file", "model-input")
PLOT = to_png(synthetic_digit(7))
CARD = """# MNIST model card: version 1

Test accuracy **91.00 %** <script>alert('card')</script> <img src=x onerror=alert(1)>

[run me](javascript:alert(1)), [me too](data:text/html,<script>x</script>) and [the docs](https://example.org/docs)

![confusion matrix](confusion_matrix.png)

![from elsewhere](https://example.org/track.png)

![unpublished](later.png)

| epsilon | accuracy |
|---|---|
| 0.1 | 80.00 % |
"""
Client = Callable[..., TestClient]


def publish(root: Path, card: str | None = CARD, metrics: dict[str, Any] | None = None) -> Registry:
    registry = Registry(root)
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"onnx")
    (staging / "confusion_matrix.png").write_bytes(PLOT)
    if card is not None:
        (staging / layout.MODEL_CARD_FILE).write_text(card)
    facts = model_facts(0.91)
    if metrics is not None:
        facts = type(facts)(**{**facts.__dict__, "metrics": metrics})
    registry.publish(staging, facts)
    registry.promote(1, layout.PRODUCTION)
    return registry


@pytest.fixture()
def make_client(make_client: Client, tmp_path: Path) -> Client:
    """The shared client factory (tests/unit/conftest.py), its manager serving a registry with a published card."""

    def factory(registry: Registry | None = None, **overrides: Any) -> TestClient:
        return make_client(FakeManager(version=1, registry=registry or publish(tmp_path / "registry")), **overrides)

    return factory


def assert_page_headers(headers: Any) -> None:
    csp = headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe" not in csp and "*" not in csp and "http" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


# ---- the pad --------------------------------------------------------------------------------


def test_the_pad_is_served_at_the_root_with_the_page_headers(make_client: Client) -> None:
    response = make_client().get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert_page_headers(response.headers)
    for hook in TEST_HOOKS:
        assert f'data-testid="{hook}"' in response.text, hook
    head = make_client().head("/")  # an uptime checker's request: it was 405
    assert head.status_code == 200 and head.headers["content-type"] == response.headers["content-type"]


def test_the_pad_paints_before_any_model_is_ready(make_client: Client) -> None:
    client = make_client()
    client.app.state.manager.ready = False  # type: ignore[attr-defined]
    assert client.get("/health/ready").status_code == 503
    assert client.get("/").status_code == 200 and client.get("/ui/pad.js").status_code == 200


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/ui/pad.js", "text/javascript"), ("/ui/pad.css", "text/css"), ("/ui/card.css", "text/css")],
)
def test_the_pads_files_carry_the_page_headers(make_client: Client, path: str, kind: str) -> None:
    response = make_client().get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
    assert_page_headers(response.headers)
    assert response.headers["cache-control"] == "no-cache" and response.headers["etag"]


def test_the_pages_are_named_in_the_request_metrics(make_client: Client) -> None:
    def count(endpoint: str, status: int) -> float:
        return REQUESTS.labels(endpoint, "GET", status, "rest")._value.get()

    before = {key: count(*key) for key in [("/", 200), ("/ui", 200), ("/ui", 404), ("/models/{version}/card", 200)]}
    client = make_client()
    for path in ("/", "/ui/pad.js", "/ui/missing.js", "/models/1/card"):
        client.get(path)
    assert {key: count(*key) - value for key, value in before.items()} == dict.fromkeys(before, 1.0)


def test_the_pads_files_stay_small_and_fetch_nothing_from_elsewhere() -> None:
    files = sorted(p for p in PAGES_DIR.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    assert total <= PAGE_BUDGET_BYTES, f"the page's own files weigh {total} bytes; the budget is {PAGE_BUDGET_BYTES}"
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{path.name} loads something from elsewhere"
    html = (PAGES_DIR / "index.html").read_text(encoding="utf-8")
    # The CSP forbids inline script and style; the page must not need them.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"


def test_the_pages_ship_inside_the_package() -> None:
    """A non-editable install (the serving image) must carry every file the pad serves."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["service.api"]
    package = ROOT / "service" / "api"
    shipped = {p for pattern in globs for p in package.glob(pattern) if p.is_file()}
    docs_dir = package / "swagger"  # the docs page (service/api/routes_docs.py)
    assert shipped == {p for folder in (PAGES_DIR, docs_dir) for p in folder.iterdir() if p.is_file()}


def test_the_json_api_keeps_its_own_headers(make_client: Client) -> None:
    response = make_client().post("/predict", json={"image": as_json_rows(synthetic_digit())})
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers and "access-control-allow-origin" not in response.headers


def test_openapi_lists_no_page(make_client: Client) -> None:
    paths = make_client().get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.endswith("/card") or "/files/" in p]


# ---- the model card page --------------------------------------------------------------------


def test_the_card_page_renders_the_registry_card_as_text_never_as_markup(make_client: Client) -> None:
    response = make_client().get("/models/1/card")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert_page_headers(response.headers)
    page = response.text
    assert "<h1>MNIST model card: version 1</h1>" in page and "<strong>91.00 %</strong>" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert('card')&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'href="javascript:' not in page and 'href="data:' not in page
    assert '<a href="https://example.org/docs">the docs</a>' in page
    assert '<img src="/models/1/files/confusion_matrix.png" alt="confusion matrix" loading="lazy" />' in page
    assert "example.org/track.png" not in page and "[image not shown: from elsewhere]" in page
    assert "later.png" not in page and "[image not shown: unpublished]" in page
    assert "<table>" in page and "<td>80.00 %</td>" in page


def test_the_card_page_lists_versions_and_aliases_and_the_served_one(make_client: Client) -> None:
    page = make_client().get("/models/1/card").text
    assert "This service serves version 1 now." in page
    assert '<td><a href="/models/1/card">1</a></td><td>production, served here</td>' in page


@pytest.mark.parametrize(
    ("metrics", "shown"),
    [
        ({"test_accuracy": 0.982}, "<td>98.20 % (on unsoftened digits)</td>"),
        ({"test_accuracy": 0.99, "scored_as_served": True}, "<td>99.00 %</td>"),
    ],
)
def test_the_versions_table_says_which_accuracy_was_scored_on_unsoftened_digits(
    make_client: Client, tmp_path: Path, metrics: dict[str, Any], shown: str
) -> None:
    page = make_client(publish(tmp_path / "r", metrics=metrics)).get("/models/1/card").text
    assert shown in page


def test_the_robustness_chart_is_drawn_from_the_metrics(make_client: Client, tmp_path: Path) -> None:
    metrics = {
        "test_accuracy": 0.9,
        "fgsm": {"0.1": 0.8, "0.2": "<b>not a number</b>"},
        "guards": {"fgsm_refused": {"0.1": 0.25}},
    }
    page = make_client(publish(tmp_path / "r2", metrics=metrics)).get("/models/1/card").text
    assert '<svg class="chart"' in page and 'aria-labelledby="robustness-title"' in page
    assert 'class="accuracy" x="50" y="26.0" width="32" height="144.0"' in page  # clean: 90 % of 160 px
    assert "<title>refused at epsilon 0.1: 25.0 %</title>" in page
    assert "<b>not a number</b>" not in page


@pytest.mark.parametrize("guards", ["refused a lot", ["0.1"], 7, None])
def test_odd_figures_in_the_metrics_leave_the_page_without_a_chart_part_not_a_500(
    make_client: Client, tmp_path: Path, guards: Any
) -> None:
    """metadata.json's metrics are whatever training (or whoever wrote the folder) put there."""
    metrics = {"test_accuracy": 0.9, "fgsm": {"0.1": 0.8}, "guards": guards}
    response = make_client(publish(tmp_path / "odd", metrics=metrics)).get("/models/1/card")
    assert response.status_code == 200 and '<svg class="chart"' in response.text
    assert "<title>refused at epsilon" not in response.text


def test_a_version_without_a_card_still_has_a_page(make_client: Client, tmp_path: Path) -> None:
    page = make_client(publish(tmp_path / "r3", card=None)).get("/models/1/card").text
    assert "This version was published without a model card." in page


@pytest.mark.parametrize(
    ("version", "status", "code"), [("9", 404, "version_not_found"), ("x", 422, "invalid_version")]
)
def test_a_card_of_no_version_is_refused(make_client: Client, version: str, status: int, code: str) -> None:
    response = make_client().get(f"/models/{version}/card")
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_a_plot_is_served_as_published(make_client: Client) -> None:
    response = make_client().get("/models/1/files/confusion_matrix.png")
    assert response.status_code == 200 and response.content == PLOT
    assert response.headers["content-type"] == "image/png"
    assert_page_headers(response.headers)


@pytest.mark.parametrize(
    "name",
    ["MODEL_CARD.md", "model.onnx", "later.png", "..%2Fmetadata.json", ".png", "x.PNG.html", "a%00.png"],
)
def test_only_published_plots_are_served(make_client: Client, name: str) -> None:
    response = make_client().get(f"/models/1/files/{name}")
    assert response.status_code == 404, (name, response.status_code)
    assert response.json()["error"]["code"] in {"file_not_found", "not_found"}


def test_a_plot_changed_after_publishing_is_refused(make_client: Client, tmp_path: Path) -> None:
    registry = publish(tmp_path / "r4")
    (registry.version_dir(1) / "confusion_matrix.png").write_bytes(PLOT + b"changed")
    (registry.version_dir(1) / "extra.png").write_bytes(PLOT)  # on disk, but never published
    client = make_client(registry)
    changed = client.get("/models/1/files/confusion_matrix.png")
    assert changed.status_code == 500 and changed.json()["error"]["code"] == "corrupt_version"
    assert client.get("/models/1/files/extra.png").json()["error"]["code"] == "file_not_found"


# ---- MNIST_UI and MNIST_CORS_ORIGINS --------------------------------------------------------


def test_ui_false_removes_the_pages_and_keeps_the_api(make_client: Client) -> None:
    client = make_client(ui=False)
    for path in ("/", "/ui/pad.js", "/models/1/card", "/models/1/files/confusion_matrix.png"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", path
    assert client.get("/models/1").status_code == 200
    assert client.post("/predict", json={"image": as_json_rows(synthetic_digit())}).status_code == 200


def test_no_cors_unless_origins_are_listed(make_client: Client) -> None:
    origin = {"Origin": "https://pad.example.org"}
    plain = make_client().post("/predict", json={"image": as_json_rows(synthetic_digit())}, headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    preflight = make_client().options("/predict", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_listed_origins_may_call_the_api_from_a_browser(make_client: Client) -> None:
    client = make_client(cors_origins="https://pad.example.org, http://localhost:3000")
    preflight = client.options(
        "/predict",
        headers={
            "Origin": "https://pad.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://pad.example.org"
    assert "access-control-allow-credentials" not in preflight.headers
    answer = client.post(
        "/predict", json={"image": as_json_rows(synthetic_digit())}, headers={"Origin": "http://localhost:3000"}
    )
    assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "X-Model-Version" in answer.headers["access-control-expose-headers"]
    refused = client.post(
        "/predict", content=b"{", headers={"Origin": "https://pad.example.org", "Content-Type": "application/json"}
    )
    assert refused.status_code == 400 and refused.headers["access-control-allow-origin"] == "https://pad.example.org"
    stranger = client.post(
        "/predict", json={"image": as_json_rows(synthetic_digit())}, headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers


@pytest.mark.parametrize("value", ["https://a.example/", "a.example", "ftp://a.example", "https://a.example/path"])
def test_a_malformed_origin_stops_the_start(value: str) -> None:
    with pytest.raises(ValidationError, match="scheme://host"):
        Settings(cors_origins=value)


def test_origins_are_a_comma_separated_list() -> None:
    assert Settings(cors_origins=" https://a.example , http://[::1]:8080,").cors_origins == (
        "https://a.example",
        "http://[::1]:8080",
    )
    assert Settings(cors_origins="").cors_origins is None and Settings().cors_origins is None


def test_read_published_reads_only_top_level_files_the_metadata_lists(tmp_path: Path) -> None:
    registry = publish(tmp_path / "r5")
    assert registry.read_published(1, layout.MODEL_CARD_FILE).decode() == CARD
    staging = registry.new_staging_dir()
    (staging / layout.ONNX_FILE).write_bytes(b"onnx")
    (staging / "plots").mkdir()
    (staging / "plots" / "nested.png").write_bytes(PLOT)
    registry.publish(staging, model_facts())
    assert "plots/nested.png" in registry.metadata(2)["files"]
    for name in ("plots/nested.png", "metadata.json", "..", "missing.png"):
        with pytest.raises(FileNotPublished):
            registry.read_published(2, name)
