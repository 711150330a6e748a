"""The slow-query log: a statement over the threshold is logged once, normalised, with its request id, and counted."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import msgspec
import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from app.asgi import create_app
from app.logs import request_id
from app.slow_queries import logger as slow_query_logger
from infra.settings import Settings
from tests.log_capture import json_lines


def slow_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [line for line in json_lines(caplog) if line["logger"] == slow_query_logger.name]


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """The app with a threshold every statement is over."""
    async with AsyncTestClient(create_app(msgspec.structs.replace(settings, slow_query_ms=0.0))) as client:
        yield client


async def test_a_slow_statement_of_a_request_is_logged_with_its_request_id(
    strict_client: AsyncTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = await strict_client.get("/ready", headers={"X-Request-ID": "slow-ready-1"})
    assert response.status_code == 200

    [line] = [line for line in slow_lines(caplog) if line["request_id"] == "slow-ready-1"]
    assert line["statement"] == "SELECT ?"
    assert line["pool"] == "asyncpg"
    assert line["level"] == "WARNING"
    assert isinstance(line["duration_ms"], float)

    metrics = (await strict_client.get("/metrics")).text
    assert f'roi_slow_queries_total{{fingerprint="{line["fingerprint"]}"}}' in metrics


async def test_pg_sleep_over_the_default_threshold_is_logged_once(
    client: AsyncTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine = client.app.plugins.get(SQLAlchemyPlugin).config[0].get_engine()
    token = request_id.set("sleepy-request")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            await connection.execute(text("SELECT pg_sleep(0.15)"))
    finally:
        request_id.reset(token)

    lines = slow_lines(caplog)
    assert len(lines) == 1, json.dumps(lines)
    assert lines[0]["statement"] == "SELECT pg_sleep(?)"
    assert lines[0]["request_id"] == "sleepy-request"
    assert lines[0]["pool"] == "orm"
    assert isinstance(lines[0]["duration_ms"], float)
    assert lines[0]["duration_ms"] >= 150
