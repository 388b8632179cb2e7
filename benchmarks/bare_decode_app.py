"""The image bench's cost floor: a bare Starlette app that parses the multipart form and decodes with Pillow.

No model, no validation beyond what Pillow does: what reading an upload and
decoding its pixels cost on this machine under the service's own uvicorn
settings. The service's image throughput is reported as a share of this one's
(benchmarks/image_bench.py; issue 13's targets).

    python benchmarks/bare_decode_app.py --port 8001 [--workers 2]
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the service's server code

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def predict(request: Request) -> Response:
    form = await request.form()
    upload = form["file"]
    if isinstance(upload, str):
        return JSONResponse({"error": "file must be a file"}, status_code=422)
    data = await upload.read()
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # the decode: every pixel read
        width, height = image.size
    return JSONResponse({"width": width, "height": height})


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health/ready", ready)])

if __name__ == "__main__":
    from ceiling_app import serve_here  # type: ignore[import-not-found]  (a sibling script, not a package)

    serve_here("bare_decode_app:app", "Bare multipart + Pillow decode server (image bench floor).")
