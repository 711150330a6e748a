"""The SAQ web UI at /saq: admins only, by bearer token or by the cookie scoped to /saq, and nothing else."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from saq.web.common import STATIC_PATH

from domain.accounts.security import ADMIN_UI_COOKIE
from infra.settings import Settings
from testkit.factories import RegistrationFactory
from tests.integration.jobs_support import (
    running_worker,
    start_run,
    status_of,
    wait_for_status,
    wait_until,
    worker_config,
)
from tests.integration.queue_support import forget_queue, queue_name
from tests.integration.support import Account
from tests.integration.test_workflows import create

QUEUES = "/saq/api/queues"


@pytest.fixture
async def empty_lanes(settings: Settings) -> AsyncIterator[None]:
    assert settings.redis_url
    await forget_queue(settings.redis_url, queue_name(settings))
    yield
    await forget_queue(settings.redis_url, queue_name(settings))


async def sign_up_admin(client: AsyncTestClient[Litestar], db: asyncpg.Pool) -> tuple[Account, str]:
    """Register through the API, promote in the database, log in again (the token carries the admin claim).

    Returns the admin and the Set-Cookie header of that login.
    """
    registration = RegistrationFactory.build()
    credentials = {"email": registration.email, "password": registration.password}
    created = await client.post("/api/auth/register", json={**credentials, "name": registration.name})
    assert created.status_code == 201, created.text
    first = await client.post("/api/auth/login", json=credentials)
    assert first.status_code == 200
    assert "set-cookie" not in first.headers, "not an admin yet: no cookie"
    await db.execute("UPDATE users SET is_admin = true WHERE email = $1", registration.email)
    login = await client.post("/api/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    client.cookies.clear()  # every request below says exactly which credentials it sends
    admin = Account(created.json()["id"], registration.email, login.json()["access_token"])
    return admin, login.headers["set-cookie"]


def cookie_header(set_cookie: str) -> dict[str, str]:
    """What a browser sends back for the cookie of `set_cookie`, and only that."""
    morsel = SimpleCookie(set_cookie)[ADMIN_UI_COOKIE]
    return {"Cookie": f"{morsel.key}={morsel.coded_value}"}


async def queues(client: AsyncTestClient[Litestar], headers: dict[str, str]) -> tuple[int, Any]:
    client.cookies.clear()
    response = await client.get(QUEUES, headers=headers)
    return response.status_code, response.json()


async def test_the_queue_ui_is_for_admins_only(
    client: AsyncTestClient[Litestar], alice: Account, db: asyncpg.Pool, settings: Settings, empty_lanes: None
) -> None:
    admin, _ = await sign_up_admin(client, db)
    assert (await queues(client, {}))[0] == 401
    assert (await queues(client, {"Authorization": "Bearer not-a-token"}))[0] == 401
    assert (await queues(client, alice.headers))[0] == 403
    client.cookies.clear()
    assert (await client.get("/saq/", headers=alice.headers)).status_code == 403, "the page too"

    workflow = await create(client, alice, cash_flows=[-100.0, 60.0, 60.0], parameters={"discount_rate": 0.05})
    await start_run(client, alice, workflow["id"])
    status, body = await queues(client, admin.headers)
    assert status == 200, body
    queue, *lanes = body["queues"]
    assert queue["name"] == queue_name(settings)
    assert [lane["name"] for lane in lanes] == ["high", "normal", "low"]
    assert (queue["queued"], queue["active"]) == (1, 0), "one run waits, no worker runs"
    client.cookies.clear()
    assert (await client.get("/saq/", headers=admin.headers)).status_code == 200


async def test_an_admins_login_cookie_opens_the_queue_ui_and_nothing_else(
    client: AsyncTestClient[Litestar], db: asyncpg.Pool, empty_lanes: None
) -> None:
    admin, set_cookie = await sign_up_admin(client, db)
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert {"path=/saq", "httponly", "samesite=strict"} <= attributes, set_cookie

    status, body = await queues(client, cookie_header(set_cookie))
    assert status == 200, "the cookie alone, without an Authorization header, opens the UI"
    assert len(body["queues"]) == 4, "the queue and its three lanes"
    assert (await queues(client, admin.headers))[0] == 200


async def test_the_admin_cookie_does_not_authenticate_the_api(
    client: AsyncTestClient[Litestar], db: asyncpg.Pool
) -> None:
    admin, set_cookie = await sign_up_admin(client, db)
    assert (await client.get("/api/workflows", headers=admin.headers)).status_code == 200
    client.cookies.clear()
    response = await client.get("/api/workflows", headers=cookie_header(set_cookie))
    assert response.status_code == 401, "the cookie is scoped to /saq: it must never stand in for the bearer token"


async def test_aborting_a_running_job_in_the_queue_ui_cancels_its_run_for_good(
    client: AsyncTestClient[Litestar], alice: Account, db: asyncpg.Pool, settings: Settings, empty_lanes: None
) -> None:
    admin, _ = await sign_up_admin(client, db)
    parameters = {"discount_rate": 0.05, "simulations": 1_000_000, "volatility": 0.3}
    workflow = await create(client, alice, cash_flows=[-5000.0] + [100.0] * 199, parameters=parameters)  # ~2.5 s
    config = worker_config(settings, requeue_after_s=0.2, reconcile_interval_s=0.1)
    async with running_worker(config) as worker:
        accepted = await start_run(client, alice, workflow["id"])
        await wait_for_status(client, alice, workflow["id"], ("running",))
        job = await worker.queue.job(accepted["job_id"])
        assert job is not None
        client.cookies.clear()
        aborted = await client.post(f"{QUEUES}/{queue_name(settings)}/jobs/{job.key}/abort", headers=admin.headers)
        assert aborted.status_code == 202, aborted.text

        final = await wait_for_status(client, alice, workflow["id"], ("cancelled", "failed", "succeeded", "queued"))
        assert final["status"] == "cancelled"

        async def reconciled_twice() -> bool:
            quiet = "SELECT now() - updated_at > interval '0.5 s' FROM roi_workflows WHERE id = $1"
            return bool(await db.fetchval(quiet, uuid.UUID(workflow["id"])))

        await wait_until(reconciled_twice, "a few reconciler passes went by")
        assert (await status_of(client, alice, workflow["id"]))["status"] == "cancelled", "never re-queued"
    steps = (await client.get(f"/api/workflows/{workflow['id']}", headers=alice.headers)).json()["steps"]
    assert {step["status"] for step in steps} <= {"succeeded", "cancelled", "skipped"}
    assert "cancelled" in {step["status"] for step in steps}


async def test_aborting_a_queued_job_in_the_queue_ui_cancels_its_run_and_it_never_runs(
    client: AsyncTestClient[Litestar], alice: Account, db: asyncpg.Pool, settings: Settings, empty_lanes: None
) -> None:
    """No worker is running: the job waits in its lane when the operator aborts it. The run must end `cancelled`
    (not sit `queued`, nor be queued again by the reconciler and run after all)."""
    admin, _ = await sign_up_admin(client, db)
    workflow = await create(client, alice)
    accepted = await start_run(client, alice, workflow["id"])
    client.cookies.clear()
    aborted = await client.post(
        f"{QUEUES}/{queue_name(settings)}/jobs/{accepted['job_id']}/abort", headers=admin.headers
    )
    assert aborted.status_code == 202, aborted.text

    config = worker_config(settings, requeue_after_s=0.2, reconcile_interval_s=0.1)
    async with running_worker(config):
        await wait_for_status(client, alice, workflow["id"], ("cancelled", "failed", "succeeded"))
    ended = (await client.get(f"/api/workflows/{workflow['id']}", headers=alice.headers)).json()
    assert (ended["status"], ended["error"]) == ("cancelled", "aborted from the queue UI"), ended
    assert {step["status"] for step in ended["steps"]} == {"skipped"}, "no step ran"


async def test_the_ui_s_stored_gzip_assets_go_out_encoded_once(
    client: AsyncTestClient[Litestar], db: asyncpg.Pool
) -> None:
    admin, _ = await sign_up_admin(client, db)
    stored = gzip.decompress((Path(STATIC_PATH) / "snabbdom.js.gz").read_bytes())
    for accept in ("gzip, deflate, br, zstd", "br", "gzip"):
        client.cookies.clear()
        answer = await client.get("/saq/static/snabbdom.js.gz", headers={**admin.headers, "Accept-Encoding": accept})
        assert answer.status_code == 200
        assert answer.headers["content-encoding"] == "gzip", accept
        assert answer.content == stored, "one decoding gives the script a browser runs"


async def test_the_ui_s_bare_path_redirects_to_its_root(client: AsyncTestClient[Litestar]) -> None:
    answer = await client.get("/saq?x=1", follow_redirects=False)
    assert answer.status_code == 308
    assert answer.headers["location"] == "/saq/?x=1"


async def test_the_ui_shows_each_lane_s_depth_and_its_own_jobs(
    client: AsyncTestClient[Litestar], alice: Account, db: asyncpg.Pool, settings: Settings, empty_lanes: None
) -> None:
    """A lane lists its own jobs, also behind a longer queue of another lane (the UI shows ten jobs a page)."""
    admin, _ = await sign_up_admin(client, db)
    keys: dict[str, set[str]] = {"high": set(), "normal": set(), "low": set()}
    for priority in ["normal"] * 11 + ["high", "high", "low"]:
        workflow = await create(client, alice, cash_flows=[-100.0, 60.0, 60.0], priority=priority)
        keys[priority].add((await start_run(client, alice, workflow["id"]))["job_id"])
    status, body = await queues(client, admin.headers)
    assert status == 200, body
    depths = {queue["name"]: queue["queued"] for queue in body["queues"]}
    assert depths == {queue_name(settings): 14, "high": 2, "normal": 11, "low": 1}
    for lane in ("high", "low"):
        client.cookies.clear()
        answer = await client.get(f"{QUEUES}/{lane}", headers=admin.headers)
        assert answer.status_code == 200, answer.text
        shown = answer.json()["queue"]
        assert shown["queued"] == len(keys[lane])
        assert {job["key"] for job in shown["jobs"]} == keys[lane]


def set_cookie_of(answer: Any) -> str:
    [set_cookie] = [value for name, value in answer.headers.multi_items() if name == "set-cookie"]
    return str(set_cookie)


async def test_an_admin_who_is_not_signed_in_is_shown_a_sign_in_form_that_sets_the_cookie(
    client: AsyncTestClient[Litestar], alice: Account, db: asyncpg.Pool, empty_lanes: None
) -> None:
    client.cookies.clear()
    page = await client.get("/saq/", follow_redirects=False)
    assert page.status_code == 303, "a person opening the UI is sent to the form, not shown a bare 401"
    assert page.headers["location"] == "/saq/sign-in"
    assert (await client.get(QUEUES)).status_code == 401, "the UI's JSON API still answers 401"

    form = await client.get("/saq/sign-in")
    assert form.status_code == 200
    assert form.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/saq/sign-in">' in form.text
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]

    registration = RegistrationFactory.build()
    credentials = {"email": registration.email, "password": registration.password}
    created = await client.post("/api/auth/register", json={**credentials, "name": registration.name})
    assert created.status_code == 201

    wrong = await client.post("/saq/sign-in", data={**credentials, "password": "wrong-password"})
    assert wrong.status_code == 401
    assert "Wrong email or password" in wrong.text
    assert "set-cookie" not in wrong.headers
    not_admin = await client.post("/saq/sign-in", data=credentials)
    assert not_admin.status_code == 403
    assert "not an admin" in not_admin.text
    assert "set-cookie" not in not_admin.headers

    await db.execute("UPDATE users SET is_admin = true WHERE email = $1", registration.email)
    forged = await client.post("/saq/sign-in", data=credentials, headers={"Origin": "https://elsewhere.example"})
    assert forged.status_code == 403, "a form on another site cannot sign this browser in"
    assert "set-cookie" not in forged.headers
    cross_site = await client.post("/saq/sign-in", data=credentials, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403

    signed_in = await client.post(
        "/saq/sign-in", data=credentials, headers={"Origin": "http://testserver.local"}, follow_redirects=False
    )
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "/saq/"
    set_cookie = set_cookie_of(signed_in)
    attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
    assert {"path=/saq", "httponly", "samesite=strict"} <= attributes, set_cookie
    cookie = cookie_header(set_cookie)
    client.cookies.clear()
    assert (await client.get("/saq/", headers=cookie)).status_code == 200
    assert (await queues(client, cookie))[0] == 200
    client.cookies.clear()
    assert (await client.get("/api/me", headers=cookie)).status_code == 401, "never a key to the API"

    client.cookies.clear()
    signed_out = await client.post("/saq/sign-out", headers=cookie, follow_redirects=False)
    assert signed_out.status_code == 303
    assert "max-age=0" in set_cookie_of(signed_out).lower()
    assert (await queues(client, cookie))[0] == 401, "the cookie's token is revoked, not merely forgotten"
    client.cookies.clear()
    assert "Sign in with an admin account" in (await client.get("/saq/sign-in", headers=cookie)).text


async def test_a_revoked_cookie_gets_the_sign_in_form_again_not_a_dead_end(
    client: AsyncTestClient[Litestar], db: asyncpg.Pool
) -> None:
    """The admin changed their password elsewhere: the browser's cookie names a revoked token. The UI sends them to
    the form, and the form must offer to sign in, not claim they are signed in and send them back in a loop."""
    admin, set_cookie = await sign_up_admin(client, db)
    cookie = cookie_header(set_cookie)
    assert "You are signed in" in (await client.get("/saq/sign-in", headers=cookie)).text
    logout = await client.post("/api/auth/logout", headers=admin.headers)
    assert logout.status_code == 204

    client.cookies.clear()
    sent_back = await client.get("/saq/", headers=cookie, follow_redirects=False)
    assert (sent_back.status_code, sent_back.headers["location"]) == (303, "/saq/sign-in")
    client.cookies.clear()
    form = await client.get("/saq/sign-in", headers=cookie)
    assert "Sign in with an admin account" in form.text
    assert "You are signed in" not in form.text
    client.cookies.clear()
    signed_out = await client.post("/saq/sign-out", headers=cookie, follow_redirects=False)
    assert signed_out.status_code == 303, "a stale cookie can still be cleared"
    assert "max-age=0" in set_cookie_of(signed_out).lower()
