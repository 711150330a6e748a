"""Logging: one JSON object per line on stdout for every logger, tagged with the current request's id."""

from __future__ import annotations

import datetime
import logging
import sys
from contextvars import ContextVar
from typing import Any

import msgspec
from litestar.exceptions import HTTPException
from litestar.types import Scope

from app.unavailable import is_unavailable
from domain.errors import DomainError

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request being served, so that any line logged while serving it can name it."""

URL_LOGGERS = ("httpx", "httpcore")
"""HTTP clients that log whole URLs, query strings and all, at INFO."""

_encoder = msgspec.json.Encoder(enc_hook=str)
_errors = logging.getLogger("roi.errors")


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "msg", ...}`; structured fields come in as `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if "request_id" not in line and (current := request_id.get()) is not None:
            line["request_id"] = current
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class JsonStdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler on the root logger."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(JsonFormatter())


def configure_logging(level: str) -> None:
    """Route every logger to JSON lines on stdout at `level`.

    Idempotent: `create_app` runs once per server process but once per test, and must not stack handlers.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, JsonStdoutHandler)]:
        root.removeHandler(handler)
    root.addHandler(JsonStdoutHandler())
    root.setLevel(level.upper())
    # A line per request: skip what the JSON never shows (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for chatty in URL_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def granian_logging(level: str) -> dict[str, Any]:
    """A `log_dictconfig` for Granian so that its own lines are JSON on stdout too."""
    handler = {"()": JsonStdoutHandler}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": handler, "access": handler},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": level.upper(), "propagate": False},
            "granian.access": {"handlers": ["access"], "level": level.upper(), "propagate": False},
        },
    }


async def log_server_error(error: Exception, scope: Scope) -> None:
    """An `after_exception` hook: a traceback for what became a 5xx; client errors are the access log's business.

    Only the route template is named: a raw path or query could carry a token.
    """
    if isinstance(error, HTTPException | DomainError) and error.status_code < 500:
        return
    if is_unavailable(error):
        _errors.warning(
            "database unavailable",
            extra={"fields": {"route": scope.get("path_template", "<unmatched>"), "error": type(error).__name__}},
        )
        return
    _errors.error(
        "unhandled error",
        exc_info=error,
        extra={
            "fields": {
                "route": scope.get("path_template", "<unmatched>"),
                "error": type(error).__name__,
                "request_id": request_id.get(),
            }
        },
    )
