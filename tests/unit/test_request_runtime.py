"""The two runtime choices the prediction path's speed rests on (benchmarks/README.md), each guarded here.

- ``PredictionRoute``: Starlette hands a matched request to ``route.app``; FastAPI's own wrapper for it (exit
  stacks, a second exception wrapper) is skipped. A FastAPI upgrade that routes these requests some other way
  would silently bring that cost back: this fails instead.
- ``gc.freeze()`` as the service starts, so the collector's full passes skip the long-lived heap.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from service.api.routes_predict import PredictionRoute
from tests.helpers import as_json_rows, synthetic_digit

ClientFactory = Callable[..., TestClient]
PREDICTION_PATHS = {"/predict", "/predict/batch", "/v2/models/{model_name}/infer"}


def _prediction_routes(client: TestClient) -> dict[str, PredictionRoute]:
    return {route.path: route for route in client.app.router.routes if isinstance(route, PredictionRoute)}


def test_prediction_routes_sit_first_on_the_apps_own_router(make_client: ClientFactory) -> None:
    client = make_client()
    routes = _prediction_routes(client)
    assert set(routes) >= PREDICTION_PATHS
    paths = [getattr(route, "path", None) for route in client.app.router.routes]
    before = paths[: max(paths.index(path) for path in routes) + 1]
    assert all(path in routes or path == "/openapi.json" for path in before), before


def test_a_prediction_request_is_served_by_the_routes_own_app(make_client: ClientFactory) -> None:
    client = make_client()
    route = _prediction_routes(client)["/predict"]
    served: list[dict[str, Any]] = []
    own_app = route.app

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        served.append(scope)
        await own_app(scope, receive, send)

    route.app = recording
    try:
        response = client.post("/predict", json={"image": as_json_rows(synthetic_digit())})
    finally:
        route.app = own_app
    assert response.status_code == 200 and response.json()["digit"] == 7
    assert len(served) == 1
    # FastAPI's request_response would have put its exit stacks here.
    assert "fastapi_inner_astack" not in served[0]


def test_the_heap_is_frozen_while_the_service_runs_and_thawed_at_stop(make_client: ClientFactory) -> None:
    gc.unfreeze()
    client = make_client()
    assert gc.get_freeze_count() > 0
    client.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
