"""Hostile and careless clients: login brute force, oversized and deep bodies, cross-origin browsers, and the
headers every response carries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from infra.settings import Settings
from tests.integration.support import Account, sign_up

WINDOW_S = 60


@pytest.fixture
async def strict(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """The app with small limits, so that tests reach them quickly."""
    limited = msgspec.structs.replace(
        settings,
        login_max_failures_per_account=3,
        login_max_failures_per_address=5,
        login_failure_window_s=WINDOW_S,
        max_json_body_bytes=64 * 1024,
    )
    async with AsyncTestClient(create_app(limited)) as client:
        yield client


async def login(client: AsyncTestClient, email: str, password: str) -> int:
    return (await client.post("/api/auth/login", json={"email": email, "password": password})).status_code


async def test_repeated_failed_logins_lock_the_account_with_429_and_retry_after(strict: AsyncTestClient) -> None:
    alice = await sign_up(strict)
    assert [await login(strict, alice.email, "wrong-password") for _ in range(3)] == [401, 401, 401]

    locked = await strict.post("/api/auth/login", json={"email": alice.email, "password": "wrong-password"})
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= WINDOW_S
    assert "too many failed logins" in locked.json()["detail"]
    # the lock stops guessing, not the account: its tokens keep working
    assert (await strict.get("/api/me", headers=alice.headers)).status_code == 200
    assert await login(strict, alice.email.upper(), "wrong-password") == 429


async def test_a_successful_login_clears_the_accounts_failures(strict: AsyncTestClient, settings: Settings) -> None:
    registration = {"email": "carol@example.com", "password": "correct horse battery", "name": "Carol"}
    assert (await strict.post("/api/auth/register", json=registration)).status_code == 201
    for _ in range(2):
        assert await login(strict, "carol@example.com", "nope-nope-nope") == 401
    assert await login(strict, "carol@example.com", "correct horse battery") == 200
    for _ in range(2):
        assert await login(strict, "carol@example.com", "nope-nope-nope") == 401
    assert await login(strict, "carol@example.com", "correct horse battery") == 200


async def test_one_address_guessing_many_accounts_is_limited_too(strict: AsyncTestClient) -> None:
    accounts = [await sign_up(strict) for _ in range(3)]
    statuses = [await login(strict, account.email, "wrong-password") for account in accounts for _ in range(2)]
    assert statuses == [401, 401, 401, 401, 401, 429]
    assert await login(strict, "nobody@example.com", "whatever-it-is") == 429


async def test_a_json_body_over_the_limit_is_413_and_deep_nesting_is_400(strict: AsyncTestClient) -> None:
    alice = await sign_up(strict)
    huge = {"name": "x", "cash_flows": [-1.0] + [1.0] * 40_000, "parameters": {"discount_rate": 0.1}}
    too_big = await strict.post("/api/workflows", content=json.dumps(huge), headers=alice.headers)
    assert too_big.status_code == 413

    deep = '{"name": "x", "parameters": {"discount_rate": 0.1}, "cash_flows": ' + "[" * 10_000 + "]" * 10_000 + "}"
    nested = await strict.post("/api/workflows", content=deep, headers=alice.headers)
    assert nested.status_code == 400
    assert "cash_flows" in nested.text
    assert (await strict.get("/api/workflows", headers=alice.headers)).json()["total"] == 0


async def test_every_response_carries_the_security_headers(client: AsyncTestClient, alice: Account) -> None:
    answers = [
        await client.get("/health"),
        await client.get("/api/workflows", headers=alice.headers),
        await client.get("/api/workflows"),
        await client.get("/no/such/path"),
        await client.post("/api/auth/login", content=b"{not json"),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 401, 404, 400]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"


PREFLIGHT = {
    "Origin": "https://app.example.com",
    "Access-Control-Request-Method": "PATCH",
    "Access-Control-Request-Headers": "authorization,tus-resumable,upload-offset,content-type",
}


async def test_cors_is_off_by_default(client: AsyncTestClient, alice: Account) -> None:
    answer = await client.get("/api/workflows", headers={**alice.headers, "Origin": "https://app.example.com"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    preflight = await client.options("/api/uploads/00000000-0000-0000-0000-000000000000", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers


async def test_configured_origins_get_cors_and_others_do_not(settings: Settings) -> None:
    app = create_app(msgspec.structs.replace(settings, cors_allow_origins="https://app.example.com"))
    async with AsyncTestClient(app) as client:
        alice = await sign_up(client)
        preflight = await client.options("/api/uploads/00000000-0000-0000-0000-000000000000", headers=PREFLIGHT)
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "upload-offset" in preflight.headers["access-control-allow-headers"].lower()

        answer = await client.get("/api/uploads", headers={**alice.headers, "Origin": "https://app.example.com"})
        assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
        exposed = answer.headers["access-control-expose-headers"].lower()
        assert "upload-offset" in exposed
        assert "etag" in exposed, "a page script can read the ETag to send If-None-Match"

        stranger = await client.get("/api/uploads", headers={**alice.headers, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers


async def test_secrets_never_reach_metrics_or_error_bodies(client: AsyncTestClient) -> None:
    registration = {"email": "frank@example.com", "password": "a secret passphrase", "name": "Frank"}
    assert (await client.post("/api/auth/register", json=registration)).status_code == 201
    login = await client.post("/api/auth/login", json={"email": "frank@example.com", "password": "a secret passphrase"})
    token = login.json()["access_token"]
    wrong = await client.post("/api/auth/login", json={"email": "frank@example.com", "password": "another secret"})
    bad_token = await client.get("/api/workflows", headers={"Authorization": f"Bearer {token}x"})
    by_query = await client.get(f"/api/workflows?token={token}")

    metrics = (await client.get("/metrics")).text
    for secret in ("a secret passphrase", "another secret", token):
        assert secret not in metrics
        for answer in (wrong, bad_token, by_query):
            assert secret not in answer.text
