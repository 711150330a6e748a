"""Other users' data is invisible: every endpoint with an id, every tus verb and every channel, tried by a
second user with the first user's ids, answers 404 (or `forbidden`) and changes nothing; the SAQ UI and its API
refuse non-admins. The route table is checked too, so a new endpoint cannot skip this suite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from infra.settings import Settings
from tests.integration.support import Account
from tests.integration.test_workflows import create
from tests.integration.upload_support import OFFSET_STREAM, TUS, append, create_upload, offset_of
from tests.integration.ws_support import LiveServer, connected, live_server, receive

LEDGER = b"period,cash_flow\n0,-100\n1,70\n2,70\n"

# (method, route as the app declares it, path with the victim's ids, extra request arguments)
PRIVATE_REQUESTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("GET", "/api/workflows/{workflow_id:str}", "/api/workflows/{workflow}", {}),
    ("PATCH", "/api/workflows/{workflow_id:str}", "/api/workflows/{workflow}", {"json": {"name": "mine now"}}),
    ("DELETE", "/api/workflows/{workflow_id:str}", "/api/workflows/{workflow}", {}),
    ("GET", "/api/workflows/{workflow_id:str}/status", "/api/workflows/{workflow}/status", {}),
    ("GET", "/api/workflows/{workflow_id:str}/result", "/api/workflows/{workflow}/result", {}),
    ("GET", "/api/workflows/{workflow_id:str}/cash-flows", "/api/workflows/{workflow}/cash-flows", {}),
    ("POST", "/api/workflows/{workflow_id:str}/run", "/api/workflows/{workflow}/run", {}),
    ("POST", "/api/workflows/{workflow_id:str}/cancel", "/api/workflows/{workflow}/cancel", {}),
    ("GET", "/api/uploads/{upload_id:str}", "/api/uploads/{upload}", {}),
    ("GET", "/api/uploads/{upload_id:str}/content", "/api/uploads/{upload}/content", {}),
    ("HEAD", "/api/uploads/{upload_id:str}", "/api/uploads/{upload}", {"headers": TUS}),
    (
        "PATCH",
        "/api/uploads/{upload_id:str}",
        "/api/uploads/{upload}",
        {"headers": {**TUS, **OFFSET_STREAM, "Upload-Offset": "5"}, "content": b"x,y\n"},
    ),
    ("DELETE", "/api/uploads/{upload_id:str}", "/api/uploads/{upload}", {"headers": TUS}),
]


def test_every_route_with_an_id_is_in_this_suite(client: AsyncTestClient) -> None:
    declared = {
        (method, route.path)
        for route in client.app.routes
        if route.path.startswith("/api/") and "{" in route.path
        for method in getattr(route, "methods", ())
        if method != "OPTIONS"
    }
    assert declared == {(method, route) for method, route, _, _ in PRIVATE_REQUESTS}


async def victim_state(client: AsyncTestClient, owner: Account, workflow: str, upload: str) -> dict[str, Any]:
    detail = (await client.get(f"/api/workflows/{workflow}", headers=owner.headers)).json()
    view = (await client.get(f"/api/uploads/{upload}", headers=owner.headers)).json()
    return {"workflow": detail, "upload": view, "offset": await offset_of(client, owner, f"/api/uploads/{upload}")}


async def test_another_users_ids_are_404_everywhere_and_change_nothing(
    client: AsyncTestClient, alice: Account, bob: Account
) -> None:
    workflow = (await create(client, alice, cash_flows=[-100.0, 70.0, 70.0]))["id"]
    location = await create_upload(client, alice, len(LEDGER))
    upload = location.rsplit("/", 1)[-1]
    await append(client, alice, location, 0, LEDGER[:5])
    before = await victim_state(client, alice, workflow, upload)

    for method, _, path, arguments in PRIVATE_REQUESTS:
        headers = {**bob.headers, **arguments.get("headers", {})}
        request = {key: value for key, value in arguments.items() if key != "headers"}
        answer = await client.request(method, path.format(workflow=workflow, upload=upload), headers=headers, **request)
        assert answer.status_code == 404, (method, path, answer.status_code, answer.text)

    assert (await client.get("/api/workflows", headers=bob.headers)).json()["total"] == 0
    assert (await client.get("/api/uploads", headers=bob.headers)).json()["total"] == 0
    borrowed = await client.post(
        "/api/workflows",
        headers=bob.headers,
        json={"name": "borrowed", "upload_id": upload, "parameters": {"discount_rate": 0.1}},
    )
    assert borrowed.status_code == 400
    assert await victim_state(client, alice, workflow, upload) == before


SAQ_PATHS = [
    ("GET", "/saq"),
    ("GET", "/saq/health"),
    ("GET", "/saq/queues/roi"),
    ("GET", "/saq/queues/roi/jobs/some-job"),
    ("GET", "/saq/api/queues"),
    ("GET", "/saq/api/queues/roi"),
    ("GET", "/saq/api/queues/roi/jobs/some-job"),
    ("POST", "/saq/api/queues/roi/jobs/some-job/abort"),
    ("POST", "/saq/api/queues/roi/jobs/some-job/retry"),
]
PUBLIC_SAQ_PATHS = {("GET", "/saq/sign-in"), ("POST", "/saq/sign-in"), ("POST", "/saq/sign-out")}
"""The sign-in form, where it posts, and sign-out (which clears any cookie, and revokes only an admin's valid one)."""


async def test_the_queue_ui_and_its_api_refuse_non_admins(client: AsyncTestClient, alice: Account) -> None:
    declared = {
        (method, route.path)
        for route in client.app.routes
        if route.path.startswith("/saq") and "static" not in route.path
        for method in getattr(route, "methods", ())
        if method not in ("OPTIONS", "HEAD")
    }
    assert len(declared - PUBLIC_SAQ_PATHS) == len(SAQ_PATHS)
    for method, path in SAQ_PATHS:
        client.cookies.clear()
        assert (await client.request(method, path, headers=alice.headers)).status_code == 403, (method, path)
        page = "/saq/" if path == "/saq" else path  # the bare path is first redirected to the UI's root
        anonymous = await client.request(method, page, follow_redirects=False)
        if method == "GET" and not path.startswith("/saq/api/"):
            assert anonymous.status_code == 303, (method, path, "a page: to the sign-in form")
            assert anonymous.headers["location"] == "/saq/sign-in"
        else:
            assert anonymous.status_code == 401, (method, path)


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(settings, tmp_path_factory.mktemp("isolation"), workers=1) as running:
        yield running


async def test_another_users_channels_are_forbidden(
    server: LiveServer, client: AsyncTestClient, alice: Account, bob: Account
) -> None:
    workflow = (await create(client, alice, cash_flows=[-100.0, 70.0, 70.0]))["id"]
    upload = (await create_upload(client, alice, len(LEDGER))).rsplit("/", 1)[-1]
    token = bob.headers["Authorization"].removeprefix("Bearer ")
    async with connected(server.url(token)) as ws:
        for channel in (f"workflow:{workflow}", f"upload:{upload}", f"user:{alice.id}"):
            await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
            answer = await receive(ws)
            assert (answer["type"], answer["code"]) == ("error", "forbidden"), channel
        await ws.send(json.dumps({"op": "ping"}))
        assert (await receive(ws))["type"] == "pong", "the socket stays usable"
    async with httpx.AsyncClient(base_url=server.base_url) as api:
        assert (await api.get(f"/api/workflows/{workflow}", headers=bob.headers)).status_code == 404
