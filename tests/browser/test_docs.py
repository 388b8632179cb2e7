"""The API documentation at /docs in a real headless Chromium, against a real service and the tiny model.

The page must work with no network beyond this origin: every request it makes is recorded, and any request to
elsewhere, any failed request and any answer of 400 or more fails the test, as does any console error (a CSP
violation is one; ``conftest.open_page`` watches them).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, Request, Response

from tests.browser.conftest import BrowserPage
from tests.conftest import ServerHandle

OpenPage = Callable[..., BrowserPage]
METHODS = {"get", "post", "put", "patch", "delete"}


class Traffic:
    """Every request a page makes: where it went, which failed, which answered 400 or more."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.failed: list[str] = []
        self.refused: list[str] = []
        page.on("request", self._request)
        page.on("requestfailed", lambda request: self.failed.append(f"{request.url}: {request.failure}"))
        page.on("response", self._response)

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.refused.append(f"{response.status} {response.url}")

    def assert_clean(self, origin: str) -> None:
        elsewhere = [url for url in self.urls if not url.startswith(origin + "/")]
        assert not elsewhere, f"requests left the origin: {elsewhere}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.refused, f"refused requests: {self.refused}"


@pytest.fixture()
def docs(open_page: OpenPage, pad_server: ServerHandle) -> tuple[BrowserPage, Traffic]:
    view = open_page()
    traffic = Traffic(view.page)
    response = view.page.goto(pad_server.base_url + "/docs")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    return view, traffic


def test_docs_show_every_operation_with_nothing_fetched_from_elsewhere(
    docs: tuple[BrowserPage, Traffic], pad_server: ServerHandle
) -> None:
    view, traffic = docs
    document = httpx.get(pad_server.base_url + "/openapi.json", timeout=5).json()
    expected = {(m.upper(), p) for p, item in document["paths"].items() for m in item if m in METHODS}
    view.page.locator(".opblock").first.wait_for(timeout=20_000)
    blocks = view.page.locator(".opblock-summary")
    shown = {
        (
            blocks.nth(i).locator(".opblock-summary-method").inner_text(),
            blocks.nth(i).locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for i in range(blocks.count())
    }
    assert shown == expected
    view.page.wait_for_load_state("networkidle")
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in traffic.urls)
    traffic.assert_clean(pad_server.base_url)
    view.screenshot("docs")


def test_try_it_out_on_predict_with_the_json_example_answers_a_digit(
    docs: tuple[BrowserPage, Traffic], pad_server: ServerHandle
) -> None:
    view, traffic = docs
    operation = view.page.locator("#operations-predict-predict_predict_post")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    assert operation.locator(".body-param-content-type select").input_value() == "application/json"
    with view.page.expect_response(lambda r: r.url == pad_server.base_url + "/predict") as answered:
        operation.locator(".execute").click()
    assert answered.value.status == 200 and answered.value.json()["digit"] == 1
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    assert status.inner_text().strip() == "200"
    assert "curl -X 'POST'" in operation.locator(".curl-command").inner_text()
    traffic.assert_clean(pad_server.base_url)
