"""Reading captured log records as the JSON lines they become on stdout."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.logs import JsonFormatter
from app.request_log import logger as access_logger


def json_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in caplog.records]


def access_line(lines: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    found = [line for line in lines if line["logger"] == access_logger.name and line.get("request_id") == request_id]
    assert len(found) == 1, f"exactly one access line for {request_id}: {found}"
    return found[0]
