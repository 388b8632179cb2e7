"""Structured logs: one JSON object per line on stdout, with the request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and belongs in the line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
_HANDLER_NAME = "mnist-json"
# The handler configure_logging installed (a list: set from inside the function without a global statement).
_installed: list[JsonLineHandler | None] = [None]


# One encoder for every line (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))
_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with milliseconds; the seconds part formatted once per second."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


def _head(created: float, level: str, logger: str, message: str) -> dict[str, Any]:
    """The fields every line starts with."""
    line: dict[str, Any] = {"ts": _timestamp(created), "level": level, "logger": logger, "msg": message}
    request_id = REQUEST_ID.get()
    if request_id:
        line["request_id"] = request_id
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _head(record.created, record.levelname.lower(), record.name, record.getMessage())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler of the service: JSON records, plus pre-formatted access lines kept in a buffer.

    The buffer is written out before the next record (so lines stay in order), when it holds
    ``MAX_PENDING`` lines, and on ``flush()``. One write per burst instead of one per request, even
    with ``PYTHONUNBUFFERED=1`` (the image sets it), where every stream write is a system call.
    """

    MAX_PENDING = 256

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def add_line(self, text: str) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(text)
            if len(self._pending) >= self.MAX_PENDING:
                self._write_pending_or_report()

    def _write_pending(self) -> None:
        """Write the waiting lines; on failure they stay (the newest MAX_PENDING) and the error is raised."""
        if not self._pending:
            return
        try:
            self.stream.write("".join(self._pending))
        except Exception:
            del self._pending[: -self.MAX_PENDING]  # a stream that stays broken must not grow the buffer
            raise
        self._pending.clear()

    def _write_pending_or_report(self) -> None:
        # Reported the way logging reports a failed record, never raised into a request or the model thread.
        try:
            self._write_pending()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "access lines could not be written"}))

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending_or_report()
            super().emit(record)  # handles its own write errors

    def flush(self) -> None:
        """Raises on a broken stream, as StreamHandler.flush does (logging.shutdown expects that)."""
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
            super().flush()


def configure_logging(level: str = "info") -> None:
    """Idempotent: route the root logger and uvicorn's loggers through one JSON handler."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        handler = JsonLineHandler(sys.stdout)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        _installed[0] = handler
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Our access line (service.access) replaces uvicorn's plain-text one.
    logging.getLogger("uvicorn.access").disabled = True


def _json_handler() -> JsonLineHandler | None:
    """The JSON handler on the root logger, if any; the one configure_logging installed is checked first
    (asked once per access line)."""
    handlers = logging.root.handlers
    installed = _installed[0]
    if installed is not None and installed in handlers:
        return installed
    return next((h for h in handlers if isinstance(h, JsonLineHandler)), None)


def request_fields(method: str, path: str, route: str, status: int, elapsed_s: float, version: str) -> dict[str, Any]:
    """The fields of an access line, in their order."""
    return {
        "method": method,
        "path": path[:200],
        "route": route,
        "status": status,
        "duration_ms": round(elapsed_s * 1000, 3),
        "model_version": version or None,
    }


class AccessLog:
    """One line per answered request, in the JSON shape of every other line, without ``logging``'s
    per-record machinery: through it the access line cost a tenth of the event loop's time under load
    (bench, JSON at c=64). It honours the level of its logger (``MNIST_LOG_LEVEL=warning`` silences it)
    and hands its lines to the JSON handler's buffer, which the service flushes every second (nginx's
    ``access_log ... buffer= flush=1s``). Without that handler (logging configured elsewhere, as in
    some tests) lines go through ``logging`` as usual.
    """

    FLUSH_EVERY_S = 1.0

    # Bounded like the metric labels the fields mostly are; a flood of distinct paths only refills it.
    MAX_CACHED_FIELDS = 1024

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)
        self._fields_json: dict[tuple[Any, ...], tuple[str, str, str]] = {}

    def write(self, level: int, fields: dict[str, Any]) -> None:
        if not self.logger.isEnabledFor(level):
            return
        handler = _json_handler()
        if handler is None:
            self.logger.log(level, "request", extra=fields)
            return
        line = _head(time.time(), logging.getLevelName(level).lower(), self.logger.name, "request")
        line.update(fields)
        handler.add_line(_ENCODER.encode(line) + "\n")

    def request(
        self, level: int, method: str, path: str, route: str, status: int, elapsed_s: float, version: str
    ) -> None:
        """``write`` for the access line itself: the same JSON, byte for byte, with the parts that repeat
        from request to request (level, method, path, route, status, version) encoded once and kept."""
        if not self.logger.isEnabledFor(level):
            return
        handler = _json_handler()
        if handler is None:
            self.write(level, request_fields(method, path, route, status, elapsed_s, version))
            return
        path = path[:200]
        key = (level, method, path, route, status, version)
        parts = self._fields_json.get(key)
        if parts is None:
            if len(self._fields_json) >= self.MAX_CACHED_FIELDS:
                self._fields_json.clear()
            parts = self._fields_json[key] = self._encode_parts(level, method, path, route, status, version)
        head, middle, tail = parts
        request_id = REQUEST_ID.get()
        # Request ids are [A-Za-z0-9._-] (see access.request_id_from): nothing in them needs escaping.
        rid = f',"request_id":"{request_id}"' if request_id else ""
        duration_ms = round(float(elapsed_s) * 1000, 3)  # a float's repr is its JSON; a numpy scalar's is not
        handler.add_line(f'{{"ts":"{_timestamp(time.time())}"{head}{rid}{middle}{duration_ms!r}{tail}')

    def _encode_parts(
        self, level: int, method: str, path: str, route: str, status: int, version: str
    ) -> tuple[str, str, str]:
        """What ``write`` puts between ts and request_id, between request_id and the duration, and after it."""
        head = _ENCODER.encode(
            {"level": logging.getLevelName(level).lower(), "logger": self.logger.name, "msg": "request"}
        )
        fields = _ENCODER.encode(request_fields(method, path, route, status, 0.0, version))
        middle, tail = fields.split('"duration_ms":0.0', 1)
        return "," + head[1:-1], "," + middle[1:] + '"duration_ms":', tail + "\n"

    @staticmethod
    def flush() -> None:
        handler = _json_handler()
        if handler is not None:
            handler.flush()
