"""Per-request counters are tallied and handed to Prometheus by publish(): at every /metrics render
and once a second by the app, so a scrape never misses a request it should count."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from service import metrics
from service.app import create_app
from service.settings import Settings
from tests.unit.api_fakes import FakeManager

pytestmark = pytest.mark.unit

LABELS = {"endpoint": "/test-tally", "method": "GET", "status": "200"}


def requests_total() -> float:
    return REGISTRY.get_sample_value("mnist_requests_total", LABELS) or 0.0


def test_tallies_reach_prometheus_at_publish_and_every_render_publishes_first() -> None:
    metrics.publish()
    before = requests_total()
    metrics.tally(metrics.REQUESTS, *LABELS.values())
    metrics.tally(metrics.REQUESTS, *LABELS.values())
    assert requests_total() == before, "tallied counts are not Prometheus's until published"

    text, _ = metrics.render()
    assert requests_total() == before + 2
    assert f'mnist_requests_total{{endpoint="/test-tally",method="GET",status="200"}} {before + 2}' in text.decode()


def test_the_in_flight_gauge_reads_the_live_count_when_published() -> None:
    base = metrics.REQUESTS_IN_FLIGHT.value
    metrics.REQUESTS_IN_FLIGHT.value += 3
    try:
        metrics.publish()
        assert REGISTRY.get_sample_value("mnist_requests_in_flight") == base + 3
    finally:
        metrics.REQUESTS_IN_FLIGHT.value -= 3
        metrics.publish()
    assert REGISTRY.get_sample_value("mnist_requests_in_flight") == base


def test_the_running_app_publishes_once_a_second_without_a_scrape(tmp_path: Path) -> None:
    """With several workers, /metrics reads what every worker published: each must publish on its own."""
    app = create_app(Settings(model_dir=tmp_path), manager=FakeManager())

    async def scenario() -> tuple[float, float]:
        async with app.router.lifespan_context(app):
            metrics.publish()
            before = requests_total()
            metrics.tally(metrics.REQUESTS, *LABELS.values())
            await asyncio.sleep(1.3)
            return before, requests_total()

    before, after = asyncio.run(scenario())
    assert after == before + 1


def test_what_was_tallied_before_shutdown_is_published_after_the_model_manager_stopped(tmp_path: Path) -> None:
    class EmptyingManager(FakeManager):
        async def stop(self) -> None:
            await super().stop()
            metrics.IMAGES_QUEUED.value = 0  # as the batcher does once it has refused what was still queued

    app = create_app(Settings(model_dir=tmp_path), manager=EmptyingManager())

    async def scenario() -> float:
        async with app.router.lifespan_context(app):
            metrics.publish()
            before = requests_total()
            metrics.tally(metrics.REQUESTS, *LABELS.values())
            metrics.IMAGES_QUEUED.value = 5
        return before

    before = asyncio.run(scenario())
    assert requests_total() == before + 1, "a worker's last second of counts was lost at shutdown"
    assert REGISTRY.get_sample_value("mnist_queue_depth") == 0
