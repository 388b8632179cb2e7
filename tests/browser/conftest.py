"""The browser tier: a real headless Chromium (Debian's ``chromium`` package, driven by Playwright for Python
through ``executable_path``) against a real ``python -m service`` on the tiny registry.

Playwright's own browser download cannot be reached from here, and must not be needed: ``make system-deps``
installs Debian's chromium as it installs prometheus. A missing chromium fails the tier with that instruction;
it never skips. Every page a test opens is watched: an uncaught script error or any console error (a CSP
violation is one) fails the test, except the "Failed to load resource" line Chromium logs for an HTTP status
the test provoked on purpose (``BrowserPage.expect_status``). Screenshots go to ``tests/browser/artifacts/``
(ignored by git).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import ServerHandle, running_server

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1000, "height": 760}
_FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")
_NETWORK_DOWN = "Failed to load resource: net::ERR_FAILED"


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "Debian's chromium is not installed: run `make system-deps` (apt-get install chromium); "
            "the browser tier never skips"
        )
    return found


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One browser per test module. Not per session: while Playwright's sync API is started it keeps an asyncio
    loop running on this thread, and every asyncio.run of the tiers after this one would fail."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def pad_server(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A service with the pages on (the default), on the tiny registry, for one test module."""
    with running_server(tmp_path_factory.mktemp("pad-server"), registry=tiny_registry) as handle:
        yield handle


@dataclass
class BrowserPage:
    """A page whose console is watched; ``problems`` lists what would fail the test."""

    page: Page
    context: BrowserContext
    expected_statuses: set[int] = field(default_factory=set)
    network_down_expected: bool = False
    problems: list[str] = field(default_factory=list)

    def expect_status(self, *statuses: int) -> None:
        """Statuses this test provokes on purpose: Chromium logs each as a console error, which is not a fault."""
        self.expected_statuses.update(statuses)

    def on_console(self, kind: str, text: str) -> None:
        if kind != "error":
            return
        failed = _FAILED_LOAD.match(text)
        if failed and int(failed.group(1)) in self.expected_statuses:
            return
        if text.startswith(_NETWORK_DOWN) and self.network_down_expected:
            return
        self.problems.append(f"console error: {text}")

    def screenshot(self, name: str, *, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture()
def open_page(chromium: Browser) -> Iterator[Callable[..., BrowserPage]]:
    """Factory: ``open_page(**context_options)``; at teardown, any console error or page error fails the test."""
    opened: list[BrowserPage] = []

    def open_(**options: object) -> BrowserPage:
        context = chromium.new_context(**{"viewport": DESKTOP, **options})
        page = context.new_page()
        watched = BrowserPage(page, context)
        page.on("console", lambda message: watched.on_console(message.type, message.text))
        page.on("pageerror", lambda error: watched.problems.append(f"uncaught error: {error}"))
        opened.append(watched)
        return watched

    yield open_
    problems = [problem for watched in opened for problem in watched.problems]
    for watched in opened:
        watched.context.close()
    assert not problems, "\n".join(problems)
