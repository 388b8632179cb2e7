"""The interactive API documentation at ``/docs``: Swagger UI served by the service itself.

FastAPI's own ``/docs`` page loads Swagger UI from a public CDN (and a favicon from FastAPI's site): blank
without internet, and third-party script in this origin at run time. Here the bundle, its CSS and icon come
from the ``fastapi-swagger`` package's data files, and the page and its initialiser from ``swagger/`` beside
this module; nothing is fetched from elsewhere. The page's Content-Security-Policy allows scripts from this
origin only (the initialiser is a file, not an inline script); pictures may also be ``data:`` URIs, which is
how Swagger UI's CSS draws its icons. ``MNIST_DOCS=false`` leaves all of this and ``/openapi.json`` out
(``service/app.py``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from service.api.routes_pages import WithPageHeaders, content_security_policy, page_headers

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
SWAGGER_DIR = Path(__file__).with_name("swagger")
# fastapi-swagger ships Swagger UI's swagger-ui-bundle.js, swagger-ui.css and favicon-32x32.png here.
SWAGGER_UI_PACKAGE = ("fastapi_swagger", "resources")
DOCS_HEADERS = page_headers(content_security_policy(img_src="'self' data:"))

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
async def swagger_ui() -> Response:
    return FileResponse(SWAGGER_DIR / "index.html", media_type="text/html; charset=utf-8", headers=DOCS_HEADERS)


def assets() -> Mount:
    """Swagger UI's files and the initialiser at ``ASSETS_PATH``, with the docs page's headers."""
    files = StaticFiles(directory=SWAGGER_DIR, packages=[SWAGGER_UI_PACKAGE])
    return Mount(ASSETS_PATH, app=WithPageHeaders(files, DOCS_HEADERS), name="docs-assets")
