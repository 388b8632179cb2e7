"""The throughput ceiling for ``make bench``: a bare ASGI app under the service's own uvicorn settings.

It reads the body, json-parses the same 28x28 payload and answers a small JSON,
nothing else: what the HTTP server, the event loop and ``json`` cost on this
machine. The service can only approach it; ``serve_bench.py`` compares the two.

    python benchmarks/ceiling_app.py --port 8001 [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: run under the service's own server code

ANSWER = json.dumps({"digit": 0, "confidence": 1.0, "model_version": 0}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    status = 200
    if scope["path"] != "/health/ready":
        image = json.loads(b"".join(chunks))["image"]
        # The cheapest honest shape check, so the ceiling is not "parse and ignore".
        status = 200 if len(image) == 28 and all(len(row) == 28 for row in image) else 422
    await send({"type": "http.response.start", "status": status, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def serve_here(app_ref: str, description: str) -> None:
    """Parse --host/--port/--workers and serve ``app_ref`` (a module in this folder) exactly as
    ``python -m service`` serves the service: the same loop, HTTP parser, limits and socket.
    The image bench's reference servers (bare_decode_app.py, naive_app.py) start through here too.
    Importing ``service.__main__`` caps the BLAS/OpenMP threads in os.environ, which the workers inherit."""
    from service.__main__ import serve
    from service.settings import Settings

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # Worker processes import the app's module by name: spawn hands them this sys.path.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    serve(app_ref, Settings(host=args.host, port=args.port, workers=args.workers), log_level="warning")


def main() -> None:
    serve_here("ceiling_app:app", "Bare ASGI ceiling for the serving benchmark.")


if __name__ == "__main__":
    main()
