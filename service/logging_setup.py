"""Structured logs: one JSON object per line on stdout, with the request id of the request being served.

While the service serves, records are handed to a ``QueueHandler`` and written by a ``QueueListener``
thread, so the event loop never waits for the JSON encoding or for stdout; once it has stopped serving, each
is written as it is made (``write_directly``: a process's last lines). The request id is read where the
record is made (a filter), since the listener thread does not see the request's context.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and belongs in the line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
_HANDLER_NAME = "mnist-json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "ts": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if line.get("request_id") is None:
            line.pop("request_id", None)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def _with_request_id(record: logging.LogRecord) -> bool:
    if "request_id" not in record.__dict__:
        record.request_id = REQUEST_ID.get()
    return True


class JsonQueueHandler(QueueHandler):
    """Queues records for ``listener``, whose one handler writes them as JSON lines to ``stream``.

    A record goes as it is: the queue never leaves the process, so nothing needs the pickling-friendly
    copy ``QueueHandler.prepare`` makes (which would also fold the traceback into the message).
    """

    def __init__(self, stream: Any) -> None:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        super().__init__(records)
        self.writer = logging.StreamHandler(stream)
        self.writer.setFormatter(JsonFormatter())
        self.listener = QueueListener(records, self.writer)
        self.queueing = False
        self.addFilter(_with_request_id)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def emit(self, record: logging.LogRecord) -> None:
        if self.queueing:
            super().emit(record)
        else:
            self.writer.handle(record)

    def start_queueing(self) -> None:
        if not self.queueing:
            self.listener.start()
            self.queueing = True

    def stop_queueing(self) -> None:
        """Write what is queued, then every later record as it is made."""
        if self.queueing:
            self.queueing = False
            self.listener.stop()


def configure_logging(level: str = "info") -> None:
    """Idempotent: route the root logger and uvicorn's loggers through one JSON handler."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    # Our lines hold the message, its extras and the request id, never the thread, process or caller a record
    # collects by default: not collecting them (the logging HOWTO's "Optimization") is part of what made the
    # access line cheaper on the event loop (benchmarks/README.md).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]  (the HOWTO's switch for the caller's frame)
    handler = json_handler()
    if handler is None:
        handler = JsonQueueHandler(sys.stdout)
        handler.set_name(_HANDLER_NAME)
        atexit.register(handler.stop_queueing)  # writes what is still queued before the process ends
        root.addHandler(handler)
    handler.start_queueing()
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Our access line (service.access) replaces uvicorn's plain-text one.
    logging.getLogger("uvicorn.access").disabled = True


def json_handler() -> JsonQueueHandler | None:
    """The handler configure_logging installed on the root logger, if any."""
    return next((h for h in logging.getLogger().handlers if isinstance(h, JsonQueueHandler)), None)


def write_directly() -> None:
    """Write what is queued, and from now on each record as it is made: for a process's last lines. uvicorn ends a
    process stopped by SIGTERM by raising the signal again once it has shut down, and its default action ends the
    process before atexit would write the queue (lines such as "service stopped" went missing)."""
    handler = json_handler()
    if handler is not None:
        handler.stop_queueing()


def drain() -> None:
    """Write every record queued so far (where a test reads the lines it caused)."""
    handler = json_handler()
    if handler is not None and handler.queueing:
        handler.stop_queueing()
        handler.start_queueing()
