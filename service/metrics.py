"""Every metric the service exports: fixed names, labels and buckets.

Labels never carry request data. With several uvicorn workers the
``PROMETHEUS_MULTIPROC_DIR`` environment variable must be set before this
module is imported (``service.__main__`` does it); ``/metrics`` then adds up
all workers through ``prometheus_client.multiprocess``.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

# Sub-millisecond resolution at the low end: one batched inference is ~0.1 ms.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONFIDENCE_BUCKETS = ("0.5", "0.9", "0.99", "1")  # label values for the upper edge of a confidence band

# protocol: "rest" (this service's own API), "oip" (the Open Inference Protocol under /v2) or "grpc" (the same
# protocol over gRPC, MNIST_GRPC_PORT).
PROTOCOL_REST, PROTOCOL_OIP, PROTOCOL_GRPC = "rest", "oip", "grpc"
REQUESTS = Counter(
    "mnist_requests_total", "HTTP requests by endpoint and status.", ["endpoint", "method", "status", "protocol"]
)
REQUEST_DURATION = Histogram(
    "mnist_request_duration_seconds",
    "End-to-end request time.",
    ["endpoint", "model_version", "protocol"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "mnist_queue_wait_seconds",
    "Time a request waited in the batch queue before its model call started.",
    ["model_version"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "mnist_inference_duration_seconds",
    "Time of one batched model call.",
    ["model_version", "backend", "device"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "mnist_batch_size", "Images per gathered batch (one or more model calls).", ["model_version"], buckets=BATCH_BUCKETS
)
QUEUE_DEPTH = Gauge("mnist_queue_depth", "Images waiting for the model.", multiprocess_mode="livesum")
IN_FLIGHT = Gauge("mnist_requests_in_flight", "Requests being handled.", multiprocess_mode="livesum")
REJECTED = Counter("mnist_rejected_inputs_total", "Inputs refused, by error code.", ["reason"])
PREDICTIONS = Counter(
    "mnist_predictions_total",
    "Answered predictions by digit and confidence band.",
    ["digit", "confidence", "model_version"],
)
MODEL_INFO = Gauge(
    "mnist_model_info",
    "1 for the model version being served.",
    ["model_version", "backend", "device"],
    multiprocess_mode="liveall",
)
MODEL_LOAD_FAILURES = Counter("mnist_model_load_failures_total", "Model versions refused at load.", ["reason"])
MODEL_LOADS = Counter("mnist_model_loads_total", "Model versions loaded and swapped in.", ["model_version"])

ALL_METRIC_NAMES = (
    "mnist_requests_total",
    "mnist_request_duration_seconds",
    "mnist_queue_wait_seconds",
    "mnist_inference_duration_seconds",
    "mnist_batch_size",
    "mnist_queue_depth",
    "mnist_requests_in_flight",
    "mnist_rejected_inputs_total",
    "mnist_predictions_total",
    "mnist_model_info",
    "mnist_model_load_failures_total",
    "mnist_model_loads_total",
)


# Every request looks up its labelled series twice: a child kept per label set saves prometheus-client's label
# checks and lock on each (the label values are few: route templates, methods, statuses, versions).
@functools.lru_cache(maxsize=1024)
def requests_total(endpoint: str, method: str, status: int, protocol: str) -> Counter:
    return REQUESTS.labels(endpoint, method, status, protocol)


@functools.lru_cache(maxsize=1024)
def request_duration(endpoint: str, model_version: str, protocol: str) -> Histogram:
    return REQUEST_DURATION.labels(endpoint, model_version, protocol)


_CONFIDENCE_EDGES = tuple((float(edge), edge) for edge in CONFIDENCE_BUCKETS)


def confidence_band(confidence: float) -> str:
    for edge, label in _CONFIDENCE_EDGES:
        if confidence <= edge:
            return label
    return CONFIDENCE_BUCKETS[-1]


def forget_live_gauges() -> None:
    """As this process exits: with several workers, take its live gauges (in flight, queue depth, model info)
    out of the sums ``/metrics`` reports. Its counters stay: they count what it did."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())


def render() -> tuple[bytes, str]:
    """The exposition text, summed over workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE
