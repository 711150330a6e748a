"""One JSON access line per request, with its request id and user; secrets never reach any log line."""

from __future__ import annotations

import json
import logging
import re

import pytest
from litestar.testing import AsyncTestClient

from tests.log_capture import access_line, json_lines

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


async def test_requests_are_logged_once_with_their_fields_and_no_secret(
    client: AsyncTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "correct-horse-battery-staple-71"
    email = "logged@example.com"
    registered = await client.post("/api/auth/register", json={"email": email, "password": password, "name": "L"})
    login = await client.post("/api/auth/login", json={"email": email, "password": password})
    token = login.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}

    me = await client.get("/api/me", headers={**bearer, "X-Request-ID": "client-id.42_A-b"})
    listed = await client.get(f"/api/workflows?token={token}&password={password}", headers=bearer)
    unmatched = await client.get(f"/nothing/{token}?token={token}", headers={"X-Request-ID": "not sane!"})
    too_long = await client.get("/health", headers={"X-Request-ID": "a" * 129})
    refused = await client.get(f"/api/me?token={token}", headers={"Authorization": f"Bearer {token}x"})

    assert me.headers["x-request-id"] == "client-id.42_A-b"
    for response in (registered, login, listed, unmatched, too_long, refused):
        assert GENERATED_ID.fullmatch(response.headers["x-request-id"]), response.request.url

    lines = json_lines(caplog)
    text = "\n".join(json.dumps(line) for line in lines)
    for secret in (password, token, token.split(".")[-1]):
        assert secret not in text

    line = access_line(lines, "client-id.42_A-b")
    assert line["method"] == "GET"
    assert line["route"] == "/api/me"
    assert line["status"] == 200
    assert line["user_id"] == registered.json()["id"]
    assert line["client"]
    assert 0 <= line["duration_ms"] < 10_000
    assert line["level"] == "INFO"
    assert line["ts"].endswith("Z")

    assert access_line(lines, listed.headers["x-request-id"])["route"] == "/api/workflows"
    assert access_line(lines, registered.headers["x-request-id"])["status"] == 201
    assert access_line(lines, registered.headers["x-request-id"])["user_id"] is None
    denied = access_line(lines, refused.headers["x-request-id"])
    assert (denied["route"], denied["status"], denied["user_id"]) == ("/api/me", 401, None)
    missing = access_line(lines, unmatched.headers["x-request-id"])
    assert (missing["route"], missing["status"]) == ("<unmatched>", 404)
