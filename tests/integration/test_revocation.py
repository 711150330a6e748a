"""Logout and password change: a revoked token stops working in every process within a second, over HTTP and on
open WebSockets, whatever happens to Redis meanwhile (PostgreSQL holds the revocations)."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
import websockets
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from domain.accounts.revocation import LATE_COMMIT_MARGIN_S, RevocationFeed, RevokedTokens
from domain.accounts.schemas import CurrentUser
from infra.settings import Settings
from testkit.factories import RegistrationFactory
from tests.integration.jobs_support import wait_until
from tests.integration.redis_support import OwnRedis
from tests.integration.ws_support import connected, live_server, token_for

PROPAGATION_S = 1.0
NEW_SOCKETS = 6


class Person:
    def __init__(self, user_id: str, email: str, password: str) -> None:
        self.id, self.email, self.password = user_id, email, password


async def register(client: AsyncTestClient | httpx.AsyncClient) -> Person:
    registration = RegistrationFactory.build()
    body = {"email": registration.email, "password": registration.password, "name": registration.name}
    created = await client.post("/api/auth/register", json=body)
    assert created.status_code == 201, created.text
    return Person(created.json()["id"], registration.email, registration.password)


async def login(client: AsyncTestClient | httpx.AsyncClient, person: Person, password: str | None = None) -> str:
    answer = await client.post("/api/auth/login", json={"email": person.email, "password": password or person.password})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me_status(client: AsyncTestClient | httpx.AsyncClient, token: str) -> int:
    return (await client.get("/api/me", headers=bearer(token))).status_code


async def within(seconds: float, condition: Callable[[], Awaitable[bool]], what: str) -> float:
    """How long `condition` took to hold; fails the test past `seconds`."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


Client = AsyncTestClient | httpx.AsyncClient


async def refused_within(client: Client, token: str, seconds: float = PROPAGATION_S) -> None:
    async def refused() -> bool:
        return await me_status(client, token) == 401

    await within(seconds, refused, "the token is refused")


async def frames_until_closed(ws: websockets.ClientConnection) -> None:
    """Reads (heartbeats, say) until the server closes; a second with no frame and no close fails."""
    while True:
        await asyncio.wait_for(ws.recv(), PROPAGATION_S)


@pytest.fixture
async def other_process(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """A second app instance: its own memory, revocations learnt only through PostgreSQL."""
    async with AsyncTestClient(create_app(settings)) as other:
        yield other


async def test_logout_revokes_that_token_everywhere_and_no_other(
    client: AsyncTestClient, other_process: AsyncTestClient
) -> None:
    person = await register(client)
    signed_out, still_signed_in = await login(client, person), await login(other_process, person)
    assert await me_status(other_process, signed_out) == 200  # known (and remembered) by the other process

    answer = await client.post("/api/auth/logout", headers=bearer(signed_out))
    assert answer.status_code == 204
    assert answer.content == b""

    refused = await client.get("/api/me", headers=bearer(signed_out))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "revoked" in refused.json()["detail"]
    await refused_within(other_process, signed_out)
    assert (await other_process.post("/api/auth/logout", headers=bearer(signed_out))).status_code == 401
    assert (await other_process.get("/api/workflows", headers=bearer(signed_out))).status_code == 401

    assert await me_status(client, still_signed_in) == 200
    assert await me_status(other_process, still_signed_in) == 200


async def test_a_process_started_after_a_logout_refuses_the_token(client: AsyncTestClient, settings: Settings) -> None:
    person = await register(client)
    token = await login(client, person)
    assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 204
    async with AsyncTestClient(create_app(settings)) as late:
        assert await me_status(late, token) == 401


async def test_password_change_revokes_every_earlier_token_and_the_old_password(
    client: AsyncTestClient, other_process: AsyncTestClient
) -> None:
    person = await register(client)
    first, second = await login(client, person), await login(other_process, person)
    bystander = await register(client)
    bystanders_token = await login(client, bystander)
    assert await me_status(other_process, second) == 200

    wrong = await client.post(
        "/api/auth/password",
        headers=bearer(first),
        json={"current_password": person.password + "x", "new_password": "a-new-password"},
    )
    assert wrong.status_code == 400
    assert "current_password" in wrong.json()["detail"]
    assert await me_status(client, first) == 200

    too_short = await client.post(
        "/api/auth/password", headers=bearer(first), json={"current_password": person.password, "new_password": "short"}
    )
    assert too_short.status_code == 400
    assert "new_password" in too_short.text

    changed = await client.post(
        "/api/auth/password",
        headers=bearer(first),
        json={"current_password": person.password, "new_password": "a-new-password"},
    )
    assert changed.status_code == 204
    assert await me_status(client, first) == 401
    await refused_within(other_process, second)
    await refused_within(other_process, first)

    old = await other_process.post("/api/auth/login", json={"email": person.email, "password": person.password})
    assert old.status_code == 401
    fresh = await login(other_process, person, "a-new-password")
    assert await me_status(client, fresh) == 200
    assert await me_status(other_process, fresh) == 200
    assert await me_status(other_process, bystanders_token) == 200


async def test_of_concurrent_password_changes_only_one_wins(settings: Settings, tmp_path: Path) -> None:
    """All give the same current password at once, across two processes: each later one must see the first's new
    password (or its token revoked by it), not succeed too and leave a password nobody chose last."""
    with live_server(settings, tmp_path, workers=2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            person = await register(client)
            tokens = [await login(client, person) for _ in range(6)]
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/api/auth/password",
                        headers=bearer(token),
                        json={"current_password": person.password, "new_password": f"new-password-{number}"},
                    )
                    for number, token in enumerate(tokens)
                )
            )
            statuses = [answer.status_code for answer in answers]
            assert statuses.count(204) == 1, [answer.text for answer in answers]
            assert set(statuses) <= {204, 400, 401}, statuses
            winner = statuses.index(204)

            async def login_with(number: int) -> int:
                password = f"new-password-{number}"
                return (
                    await client.post("/api/auth/login", json={"email": person.email, "password": password})
                ).status_code

            assert await login_with(winner) == 200
            # the others are wrong passwords now: refused, and past the failed-login limit throttled
            assert {await login_with(number) for number in range(len(tokens)) if number != winner} <= {401, 429}


async def test_wrong_current_passwords_count_as_failed_logins(settings: Settings) -> None:
    """A stolen token must not guess the password faster than the login form lets anyone."""
    strict = msgspec.structs.replace(settings, login_max_failures_per_account=3)
    async with AsyncTestClient(create_app(strict)) as client:
        person = await register(client)
        token = await login(client, person)
        wrong = {"current_password": "not-the-password", "new_password": "a-new-password"}
        statuses = [
            (await client.post("/api/auth/password", headers=bearer(token), json=wrong)).status_code for _ in range(4)
        ]
        assert statuses == [400, 400, 400, 429]
        locked = await client.post("/api/auth/login", json={"email": person.email, "password": person.password})
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert await me_status(client, token) == 200


async def test_logout_with_a_token_without_an_id_signs_the_user_out_everywhere(
    client: AsyncTestClient, other_process: AsyncTestClient, settings: Settings
) -> None:
    """Tokens issued before tokens had ids cannot be revoked one by one: all of the user's go."""
    person = await register(client)
    legacy, current = token_for(settings, person.id, 600), await login(client, person)
    assert await me_status(other_process, legacy) == 200
    assert (await client.post("/api/auth/logout", headers=bearer(legacy))).status_code == 204
    for token in (legacy, current):
        await refused_within(other_process, token)
    assert await me_status(client, await login(client, person)) == 200


async def test_revocations_hold_across_a_redis_restart(settings: Settings, own_redis: OwnRedis) -> None:
    """Revoked before Redis goes, while it is down and after it is back: refused by both processes throughout."""
    on_own_redis = msgspec.structs.replace(settings, redis_url=own_redis.url)
    async with (
        AsyncTestClient(create_app(on_own_redis)) as first,
        AsyncTestClient(create_app(on_own_redis)) as second,
    ):
        person = await register(first)
        before, during, after = [await login(first, person) for _ in range(3)]
        assert (await first.post("/api/auth/logout", headers=bearer(before))).status_code == 204
        await refused_within(second, before)

        own_redis.kill()
        assert (await first.post("/api/auth/logout", headers=bearer(during))).status_code == 204
        await refused_within(second, during)

        own_redis.start()  # empty: it keeps nothing on disk
        for token in (before, during):
            assert await me_status(first, token) == 401
            assert await me_status(second, token) == 401
        assert await me_status(second, after) == 200
        assert (await second.post("/api/auth/logout", headers=bearer(after))).status_code == 204
        await refused_within(first, after)


async def test_open_websockets_of_a_revoked_token_close_with_4401_in_every_worker(
    settings: Settings, tmp_path: Path
) -> None:
    """`roi serve`'s Granian with two worker processes: sockets land on both; a logout served by either closes them
    all within a second, and a socket of another token stays open."""
    with live_server(settings, tmp_path, workers=2) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            person = await register(http)
            revoked, kept = await login(http, person), await login(http, person)
            async with (
                connected(server.url(revoked)) as a,
                connected(server.url(revoked)) as b,
                connected(server.url(revoked)) as c,
                connected(server.url(revoked)) as d,
                connected(server.url(kept)) as survivor,
            ):
                assert (await http.post("/api/auth/logout", headers=bearer(revoked))).status_code == 204
                started = time.monotonic()
                for ws in (a, b, c, d):
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await frames_until_closed(ws)
                    assert closed.value.rcvd is not None
                    assert closed.value.rcvd.code == 4401
                    assert "revoked" in closed.value.rcvd.reason
                assert time.monotonic() - started < PROPAGATION_S
                await survivor.send('{"op": "ping"}')
                assert "pong" in str(await asyncio.wait_for(survivor.recv(), 5))

            close_codes: list[int | None] = []

            async def new_sockets_refused() -> bool:
                """Whether NEW_SOCKETS new sockets of the revoked token in a row, landing on either worker, are
                closed at once: the sockets above may all have landed on the worker that served the logout, and the
                other one learns of it at its next poll."""
                for _ in range(NEW_SOCKETS):
                    async with websockets.connect(server.url(revoked)) as refused:
                        try:
                            await asyncio.wait_for(refused.recv(), 5)
                        except websockets.ConnectionClosed as closed:
                            close_codes.append(None if closed.rcvd is None else closed.rcvd.code)
                            continue
                        return False
                return True

            await wait_until(new_sockets_refused, "new sockets of the revoked token are refused", PROPAGATION_S)
            assert set(close_codes) == {4401}


async def test_a_revocation_committed_later_than_the_margin_is_seen_at_the_next_full_read(db: asyncpg.Pool) -> None:
    """The incremental read looks back `LATE_COMMIT_MARGIN_S` only: a logout whose transaction committed later than
    that (its row created a minute before it became visible) is still applied, by the full read (every minute in
    production, every 0.5 s here)."""
    user_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO users (id, email, name, password_hash, is_admin, created_at, updated_at)"
        " VALUES ($1, $2, 'x', 'x', false, now(), now())",
        user_id,
        f"{user_id}@example.com",
    )
    revoked = RevokedTokens()
    applied = asyncio.Event()
    revoked.on_revocation(applied.set)
    feed = RevocationFeed(db, revoked, poll_s=0.02, read_all_every_s=0.5)
    await feed.start()
    try:
        token = CurrentUser(user_id, token_id="late-commit")
        assert revoked.loaded
        assert not revoked.refuses(token)
        created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=LATE_COMMIT_MARGIN_S + 60)
        await db.execute(
            "INSERT INTO token_revocations (user_id, jti, expires_at, created_at) VALUES ($1, $2, $3, $4)",
            user_id,
            token.token_id,
            datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
            created,
        )
        await asyncio.wait_for(applied.wait(), timeout=5)
        assert revoked.refuses(token)
    finally:
        await feed.stop()
