"""Workflows over HTTP: the contract's shapes, rules, limits and ownership."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from domain.workflows.schemas import WorkflowOut, WorkflowPage, WorkflowStatus
from testkit.factories import WorkflowCreateFactory
from tests.integration.support import Account


def new_workflow(**overrides: Any) -> dict[str, Any]:
    return {**msgspec.to_builtins(WorkflowCreateFactory.build()), **overrides}


async def create(client: AsyncTestClient, account: Account, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/workflows", json=new_workflow(**overrides), headers=account.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_plans_the_steps_and_reads_back(client: AsyncTestClient, alice: Account) -> None:
    created = await create(
        client,
        alice,
        name="New warehouse",
        cash_flows=[-1000, 300, 400, 500],
        parameters={"discount_rate": 0.08, "simulations": 500, "volatility": 0.1, "seed": 7},
        priority="high",
    )
    workflow = msgspec.convert(created, WorkflowOut)
    assert workflow.status == "draft"
    assert workflow.priority == "high"
    assert workflow.progress == 0.0
    assert workflow.parameters.seed == 7
    assert [step.kind for step in workflow.steps] == ["ingest", "validate", "analyze", "simulate", "report"]
    assert [step.position for step in workflow.steps] == [0, 1, 2, 3, 4]
    assert all(step.status == "pending" and step.agent == step.kind for step in workflow.steps)

    detail = await client.get(f"/api/workflows/{workflow.id}", headers=alice.headers)
    assert detail.status_code == 200
    assert msgspec.convert(detail.json(), WorkflowOut) == workflow


async def test_no_simulation_means_no_simulate_step(client: AsyncTestClient, alice: Account) -> None:
    created = await create(client, alice, parameters={"discount_rate": 0.05, "simulations": 0})
    assert [step["kind"] for step in created["steps"]] == ["ingest", "validate", "analyze", "report"]


async def test_status_is_the_small_hot_view(client: AsyncTestClient, alice: Account) -> None:
    created = await create(client, alice)
    response = await client.get(f"/api/workflows/{created['id']}/status", headers=alice.headers)
    assert response.status_code == 200
    status = msgspec.convert(response.json(), WorkflowStatus)
    assert (str(status.id), status.status, status.progress, status.current_step) == (created["id"], "draft", 0.0, None)


async def test_answers_carry_no_padding(client: AsyncTestClient, alice: Account) -> None:
    """PostgreSQL pads the JSON it builds (`{"id" : 1, ...}`); every answer goes out compact, cached or not."""
    workflow = await create(client, alice)
    for path in (f"/api/workflows/{workflow['id']}", f"/api/workflows/{workflow['id']}/status", "/api/workflows"):
        for _ in range(2):  # the miss, then the hit
            body = (await client.get(path, headers=alice.headers)).content
            assert msgspec.json.format(body, indent=-1) == body, path


async def test_list_is_newest_first_paginated_and_filtered(
    client: AsyncTestClient, alice: Account, bob: Account
) -> None:
    ids = [(await create(client, alice))["id"] for _ in range(5)]
    await create(client, bob)

    page = msgspec.convert(
        (await client.get("/api/workflows?limit=2&offset=1", headers=alice.headers)).json(), WorkflowPage
    )
    assert (page.total, page.limit, page.offset) == (5, 2, 1)
    assert [str(item.id) for item in page.items] == ids[::-1][1:3]
    assert all(len(item.steps) >= 4 for item in page.items)

    everything = (await client.get("/api/workflows", headers=alice.headers)).json()
    assert [item["id"] for item in everything["items"]] == ids[::-1]
    assert everything["limit"] == 50

    drafts = (await client.get("/api/workflows?status=draft", headers=alice.headers)).json()
    assert drafts["total"] == 5
    running = (await client.get("/api/workflows?status=running", headers=alice.headers)).json()
    assert running == {"items": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None}


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "status=bogus", "limit=ten"])
async def test_bad_list_queries_are_400(client: AsyncTestClient, alice: Account, query: str) -> None:
    response = await client.get(f"/api/workflows?{query}", headers=alice.headers)
    assert response.status_code == 400
    assert query.split("=")[0] in response.text


async def test_patch_changes_only_what_is_given(client: AsyncTestClient, alice: Account) -> None:
    created = await create(client, alice, description="before")
    response = await client.patch(
        f"/api/workflows/{created['id']}", json={"name": "Renamed", "priority": "low"}, headers=alice.headers
    )
    assert response.status_code == 200
    patched = response.json()
    assert (patched["name"], patched["priority"], patched["description"]) == ("Renamed", "low", "before")
    assert patched["updated_at"] > created["updated_at"]

    cleared = await client.patch(f"/api/workflows/{created['id']}", json={"description": None}, headers=alice.headers)
    assert cleared.json()["description"] is None
    refused = await client.patch(f"/api/workflows/{created['id']}", json={"status": "succeeded"}, headers=alice.headers)
    assert refused.status_code == 400
    assert "status" in refused.text
    unstorable = await client.patch(f"/api/workflows/{created['id']}", json={"name": "A\u0000B"}, headers=alice.headers)
    assert unstorable.status_code == 400, "PostgreSQL text cannot hold U+0000: refused, not a 500"
    assert "name" in unstorable.text


async def test_delete_removes_the_workflow_and_its_steps(client: AsyncTestClient, alice: Account, db: Any) -> None:
    created = await create(client, alice)
    assert (await client.delete(f"/api/workflows/{created['id']}", headers=alice.headers)).status_code == 204
    assert (await client.get(f"/api/workflows/{created['id']}", headers=alice.headers)).status_code == 404
    assert (
        await db.fetchval("SELECT count(*) FROM workflow_steps WHERE workflow_id = $1", uuid.UUID(created["id"])) == 0
    )
    assert (await client.delete(f"/api/workflows/{created['id']}", headers=alice.headers)).status_code == 404


async def test_another_users_workflow_is_404_everywhere(client: AsyncTestClient, alice: Account, bob: Account) -> None:
    created = await create(client, alice, name="Alice's secret")
    path = f"/api/workflows/{created['id']}"
    attempts = [
        await client.get(path, headers=bob.headers),
        await client.get(f"{path}/status", headers=bob.headers),
        await client.patch(path, json={"name": "Bob was here"}, headers=bob.headers),
        await client.delete(path, headers=bob.headers),
    ]
    assert [response.status_code for response in attempts] == [404, 404, 404, 404]
    assert all("Alice" not in response.text for response in attempts)
    unknown = await client.get(f"/api/workflows/{uuid.uuid4()}", headers=bob.headers)
    assert attempts[0].json() == unknown.json(), "someone else's id looks exactly like a missing one"

    still = (await client.get(path, headers=alice.headers)).json()
    assert still["name"] == "Alice's secret"
    assert (await client.get("/api/workflows", headers=bob.headers)).json()["total"] == 0


async def test_non_uuid_id_is_400_naming_it(client: AsyncTestClient, alice: Account) -> None:
    response = await client.get("/api/workflows/not-a-uuid", headers=alice.headers)
    assert response.status_code == 400
    assert "workflow_id" in response.text


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"parameters": {"discount_rate": 10.5}}, "discount_rate"),
        ({"parameters": {"discount_rate": -1}}, "discount_rate"),
        ({"parameters": {"discount_rate": 0.1, "simulations": 1_000_001}}, "simulations"),
        ({"parameters": {"discount_rate": 0.1, "volatility": 5.1}}, "volatility"),
        (
            {"parameters": {"discount_rate": 0.1, "simulations": 2_001}, "cash_flows": [-1.0] + [1.0] * 99_999},
            "simulations",
        ),
        ({"cash_flows": [-1.0] * 100_001}, "cash_flows"),
        ({"cash_flows": []}, "cash_flows"),
        ({"cash_flows": None}, "cash_flows"),
        ({"cash_flows": [-100, "12"]}, "cash_flows"),
        ({"upload_id": str(uuid.uuid4())}, "upload_id"),
        ({"cash_flows": None, "upload_id": "nope"}, "upload_id"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "New\u0000warehouse"}, "name"),
        ({"description": "\u0000"}, "description"),
        ({"priority": "urgent"}, "priority"),
        ({"colour": "blue"}, "colour"),
        ({"parameters": {"discount_rate": 0.1, "risk": 1}}, "risk"),
    ],
)
async def test_invalid_workflow_is_400_naming_the_field_and_writes_nothing(
    client: AsyncTestClient, alice: Account, db: Any, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/workflows", json=new_workflow(**overrides), headers=alice.headers)
    assert response.status_code == 400, response.text
    assert field in response.text
    assert await db.fetchval("SELECT count(*) FROM roi_workflows") == 0


@pytest.mark.parametrize("literal", [b"1e999", b"NaN", b"Infinity", b"-1e400"])
async def test_non_finite_cash_flows_are_400(client: AsyncTestClient, alice: Account, literal: bytes) -> None:
    body = b'{"name": "x", "parameters": {"discount_rate": 0.1}, "cash_flows": [-100, ' + literal + b"]}"
    response = await client.post(
        "/api/workflows", content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_agents_list_every_step_kind(client: AsyncTestClient, alice: Account) -> None:
    response = await client.get("/api/agents", headers=alice.headers)
    assert response.status_code == 200
    agents = response.json()["items"]
    assert sorted(kind for agent in agents for kind in agent["step_kinds"]) == sorted(
        ["ingest", "validate", "analyze", "simulate", "report"]
    )
    assert all(agent["available"] and agent["name"] and agent["description"] for agent in agents)


async def test_a_workflow_s_cash_flows_read_back_for_its_owner_only(
    client: AsyncTestClient, alice: Account, bob: Account
) -> None:
    flows = [-1000.0, 300.5, 400.0, 1e-9, 500.0]
    workflow = await create(client, alice, cash_flows=flows)
    answer = await client.get(f"/api/workflows/{workflow['id']}/cash-flows", headers=alice.headers)
    assert answer.status_code == 200
    assert answer.json() == {"workflow_id": workflow["id"], "upload_id": None, "cash_flows": flows}
    assert (await client.get(f"/api/workflows/{workflow['id']}/cash-flows", headers=bob.headers)).status_code == 404
    missing = await client.get("/api/workflows/00000000-0000-0000-0000-000000000000/cash-flows", headers=alice.headers)
    assert missing.status_code == 404
