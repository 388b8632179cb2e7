"""The browser pages: the digit pad at ``/`` and a version's model card at ``/models/{version}/card``.

The pad's files live in ``service/api/pages/`` and ship inside the package: no CDN, no build step, nothing
fetched from elsewhere. The pad calls the public API like any other client (``POST /predict?include=input``,
``GET /models``), so the limits, the guards and the metrics apply to it unchanged. Every answer from here
carries the page headers: a strict Content-Security-Policy (scripts, styles and pictures from this origin
only, no inline script or style, never framed), nosniff and a referrer policy. The JSON API keeps its own
headers. ``MNIST_UI=false`` leaves all of this out (``service/app.py``).
"""

from __future__ import annotations

from pathlib import Path

import anyio
from fastapi import APIRouter, Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry import FileNotPublished, ModelMetadata, Registry, parse_version
from registry.layout import MODEL_CARD_FILE
from service.api import card_page

PAGES_DIR = Path(__file__).with_name("pages")
ASSETS_PATH = "/ui"


def content_security_policy(img_src: str = "'self'") -> str:
    """This origin only, no inline script or style, never framed; ``img_src`` widens pictures alone."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {img_src}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def page_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers older than CSP level 2
        "Cross-Origin-Opener-Policy": "same-origin",
        # Revalidate every time (the static files answer 304 on a matching ETag): a new release's page is used at once.
        "Cache-Control": "no-cache",
    }


CONTENT_SECURITY_POLICY = content_security_policy()
PAGE_HEADERS = page_headers(CONTENT_SECURITY_POLICY)


router = APIRouter(include_in_schema=False)


class WithPageHeaders:
    """Adds the page headers to every answer of the wrapped ASGI app (the static files)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str] = PAGE_HEADERS) -> None:
        self.app = app
        self.raw_headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*kept, *self.raw_headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def assets() -> Mount:
    """The pad's script, styles and icon at ``ASSETS_PATH``: a route of its own, so the access line and the
    request metrics name it (``/ui``) rather than count it as unmatched."""
    return Mount(ASSETS_PATH, app=WithPageHeaders(StaticFiles(directory=PAGES_DIR)), name="ui")


@router.api_route("/", methods=["GET", "HEAD"])  # HEAD: what uptime checkers send by default
async def pad() -> Response:
    # A file on disk, sent whether or not a model is loaded yet: the first paint never waits on the model.
    return FileResponse(PAGES_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _card(registry: Registry, version: int, served: int | None) -> str:
    facts = ModelMetadata.from_dict(registry.metadata(version))
    try:
        markdown: str | None = registry.read_published(version, MODEL_CARD_FILE).decode("utf-8", errors="replace")
    except FileNotPublished:
        markdown = None
    return card_page.page(version, facts, markdown, registry.describe(), served)


@router.get("/models/{version}/card")
async def model_card(version: str, request: Request) -> Response:
    number = parse_version(version)  # integers only, before the registry builds any path from it
    manager = request.app.state.manager
    html = await anyio.to_thread.run_sync(_card, manager.registry, number, manager.model_version)
    return HTMLResponse(html, headers=PAGE_HEADERS)


@router.get("/models/{version}/files/{name}")
async def model_file(version: str, name: str, request: Request) -> Response:
    """A plot published with the version (the card's images): PNG files only, checked against their sha256."""
    number = parse_version(version)
    if not card_page.PLOT_NAME.fullmatch(name):
        raise FileNotPublished(f"version {number} publishes no plot {name[:60]!r}; plots are .png files")
    registry = request.app.state.manager.registry
    data = await anyio.to_thread.run_sync(registry.read_published, number, name)
    return Response(data, media_type="image/png", headers=PAGE_HEADERS)
