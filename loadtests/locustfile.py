"""Locust load test: clients that behave like the service's real users.

Mix (task weights): people-style PNG uploads 50, JSON 28x28 digits 36, batches
of 8-32 digits 10, malformed requests 4 (each must get its documented 4xx and
error code to count as a success). Bodies are checked, not only status codes.

Budgets come from the environment (set by ``loadtests/run.py``, ``make
loadtest``): LOADTEST_P99_MS and LOADTEST_FAIL_RATIO make the process exit 1
when missed, judged on the final stats at quit (the CSV lags by up to a
second); LOADTEST_VERDICT_FILE receives the one-line verdict. Without them this
is a plain locustfile. See loadtests/README.md.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust import FastHttpUser, between, events, task
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, so loadtests.* imports anywhere
from loadtests.digits import DEFAULT_SEED, batch_body, blank_png, build_pool, multipart_file

log = logging.getLogger("loadtest")

# Built once per Locust process, before any user starts: users only pick bytes.
POOL = build_pool(100, DEFAULT_SEED)
_rng = np.random.default_rng(DEFAULT_SEED + 2)
BATCHES = [batch_body(POOL, int(_rng.integers(8, 33)), _rng) for _ in range(24)]
JSON_HEADERS = {"Content-Type": "application/json"}
UPLOADS = [(digit.label, *multipart_file(digit.png)) for digit in POOL]  # (label, body, content type)
# gevent's clock is cached and only advances when its loop runs: after seconds of blocking work here,
# Locust's --run-time timer would fire that much early (a 10 s run measured 2 s). Refresh it.
gevent.get_hub().loop.update_now()


def _upload(content: bytes, filename: str = "digit.png") -> dict[str, Any]:
    body, content_type = multipart_file(content, filename)
    return {"data": body, "headers": {"Content-Type": content_type}}


# Guards may refuse a real digit (not_a_digit / suspected_adversarial): a documented answer, so
# not a load failure, but tallied and reported with the accuracy seen under load.
TALLY = {"answered": 0, "correct": 0, "guard_refusals": 0}
GUARD_CODES = {"not_a_digit", "suspected_adversarial"}


def _check_prediction(pred: Any) -> str | None:
    """Why ``pred`` breaks the /predict contract, or None when it is fine."""
    if not isinstance(pred, dict):
        return "prediction is not an object"
    digit = pred.get("digit")
    if type(digit) is not int or not 0 <= digit <= 9:
        return f"digit {digit!r} is not an int 0-9"
    confidence = pred.get("confidence")
    if not isinstance(confidence, int | float) or not 0.0 <= confidence <= 1.0:
        return f"confidence {confidence!r} is not in [0, 1]"
    probs = pred.get("probabilities")
    if probs is not None and (not isinstance(probs, list) or len(probs) != 10):
        return "probabilities is not a list of 10"
    return None


def _check_version(body: dict[str, Any]) -> str | None:
    version = body.get("model_version")
    return None if type(version) is int else f"model_version {version!r} is not an int"


def _error_code(response: Any) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _ok_json(response: Any) -> Any:
    """The JSON body of a 200 answer; otherwise the request is marked failed and None comes back."""
    if response.status_code != 200:
        response.failure(f"status {response.status_code}: {_error_code(response)}")
        return None
    try:
        body = response.json()
    except ValueError:
        response.failure("response is not JSON")
        return None
    if body is None:
        response.failure("response is JSON null")
    return body


def _slot_error_code(slot: Any) -> str | None:
    error = slot.get("error") if isinstance(slot, dict) else None
    return error.get("code") if isinstance(error, dict) else None


# (name, method kwargs, expected status, expected error code)
MALFORMED: list[tuple[str, dict[str, Any], int, str]] = [
    ("bad content type", {"data": b"seven", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ("truncated png", _upload(POOL[0].png[: len(POOL[0].png) // 2]), 400, "invalid_image"),
    ("not an image", _upload(b"GIF89a not really a digit"), 415, "unsupported_image_format"),
    ("wrong json shape", {"data": json.dumps({"image": [[0] * 27] * 28}).encode(), "headers": JSON_HEADERS}, 422,
     "invalid_input"),
    ("invalid json", {"data": b'{"image": [[0, 1,', "headers": JSON_HEADERS}, 400, "invalid_json"),
    ("blank canvas", _upload(blank_png(), "canvas.png"), 422, "no_digit"),
]  # fmt: skip


class DigitClient(FastHttpUser):
    """One person-like client: mostly single digits, sometimes a batch, rarely a broken request."""

    # About 2.5 requests/s per user: 32 users offer ~75 req/s, roughly half of what this 2-core machine
    # sustains for this mix (PNG normalisation dominates), so the default run checks the budget below the knee.
    wait_time = between(0.2, 0.6)
    network_timeout = 30.0
    connection_timeout = 10.0

    def _single(self, name: str, label: int, **kwargs: Any) -> None:
        with self.client.post("/predict", name=name, catch_response=True, **kwargs) as resp:
            if resp.status_code == 422 and _error_code(resp) in GUARD_CODES:
                TALLY["guard_refusals"] += 1
                resp.success()
                return
            body = _ok_json(resp)
            if body is None:
                return
            problem = _check_prediction(body) or _check_version(body)
            if problem:
                resp.failure(problem)
                return
            TALLY["answered"] += 1
            TALLY["correct"] += int(body["digit"] == label)

    @task(50)
    def png_upload(self) -> None:
        label, body, content_type = random.choice(UPLOADS)
        self._single("/predict [png upload]", label, data=body, headers={"Content-Type": content_type})

    @task(36)
    def json_digit(self) -> None:
        digit = random.choice(POOL)
        self._single("/predict [json]", digit.label, data=digit.json_body, headers=JSON_HEADERS)

    @task(10)
    def batch(self) -> None:
        body, labels = random.choice(BATCHES)
        with self.client.post(
            "/predict/batch", name="/predict/batch [json]", data=body, headers=JSON_HEADERS, catch_response=True
        ) as resp:
            payload = _ok_json(resp)
            if payload is None:
                return
            preds = payload.get("predictions")
            if not isinstance(preds, list) or len(preds) != len(labels):
                resp.failure(f"expected {len(labels)} predictions in order")
                return
            # A slot the guards refused is a documented per-image answer, like a 422 for a single digit.
            refused = [i for i, p in enumerate(preds) if _slot_error_code(p) in GUARD_CODES]
            TALLY["guard_refusals"] += len(refused)
            answered = [p for i, p in enumerate(preds) if i not in refused]
            problem = _check_version(payload) or next(filter(None, map(_check_prediction, answered)), None)
            if problem:
                resp.failure(problem)

    @task(4)
    def malformed(self) -> None:
        name, kwargs, status, code = random.choice(MALFORMED)
        with self.client.post("/predict", name=f"/predict [malformed: {name}]", catch_response=True, **kwargs) as resp:
            got = _error_code(resp)
            if resp.status_code == status and got == code:
                resp.success()
            else:
                resp.failure(f"expected {status} {code}, got {resp.status_code} {got}")


@events.test_stop.add_listener
def _report_quality(**_kwargs: Any) -> None:
    """Accuracy and guard refusals under load: not part of the budget, but worth seeing next to it."""
    answered, refused = TALLY["answered"], TALLY["guard_refusals"]
    if answered:
        accuracy = TALLY["correct"] / answered
        log.info("quality: %d single digits answered, accuracy %.1f%%", answered, 100 * accuracy)
    if refused:
        log.warning("quality: guards refused %d real digits (%.2f%%)", refused, 100 * refused / (answered + refused))


def verdict(environment: Environment, p99_budget_ms: float, fail_budget: float) -> tuple[bool, str]:
    """PASS/FAIL and one summary line from the final aggregated stats."""
    total = environment.stats.total
    requests, failures = total.num_requests, total.num_failures
    ratio = failures / requests if requests else 1.0
    p99 = total.get_response_time_percentile(0.99) if requests else math.inf
    p50 = total.get_response_time_percentile(0.50) if requests else math.inf
    ok = requests > 0 and ratio <= fail_budget and p99 <= p99_budget_ms
    line = (
        f"LOADTEST {'PASS' if ok else 'FAIL'}: {requests} requests, {total.total_rps:.1f} req/s; "
        f"failures {failures} ({100 * ratio:.3f}%, budget {100 * fail_budget:.3f}%); "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (budget {p99_budget_ms:g} ms)"
    )
    return ok, line


@events.quitting.add_listener
def _enforce_budget(environment: Environment, **_kwargs: Any) -> None:
    if "LOADTEST_P99_MS" not in os.environ:
        return
    ok, line = verdict(
        environment, float(os.environ["LOADTEST_P99_MS"]), float(os.environ.get("LOADTEST_FAIL_RATIO", "0.001"))
    )
    environment.process_exit_code = 0 if ok else 1
    log.info(line)
    if path := os.environ.get("LOADTEST_VERDICT_FILE"):
        Path(path).write_text(line + "\n")
