"""A workflow's stored JSON document (migration 0009) is compact and says exactly what was written, whatever the
text holds; documents stored with PostgreSQL's spacing before it still reach clients compact."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient

from tests.integration.support import Account
from tests.integration.test_workflows import create

AWKWARD_NAME = 'Q4 "board" case \\ with a\nnew line, a tab\t, é, 中文 and 🚀'
AWKWARD_DESCRIPTION = "</script> & ' \u2028 \x01"


def compact(body: bytes) -> bytes:
    return msgspec.json.format(body, indent=-1)


async def test_a_document_is_stored_compact_and_reads_back_every_character(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    parameters = {"discount_rate": 0.30000000000000004, "volatility": 1e-7, "simulations": 0, "seed": 2**53 - 1}
    created = await create(client, alice, name=AWKWARD_NAME, description=AWKWARD_DESCRIPTION, parameters=parameters)

    response = await client.get(f"/api/workflows/{created['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.content == compact(response.content), "no space between tokens"
    body = response.json()
    assert body == created
    assert (body["name"], body["description"]) == (AWKWARD_NAME, AWKWARD_DESCRIPTION)
    assert body["parameters"] == parameters
    assert [step["kind"] for step in body["steps"]] == ["ingest", "validate", "analyze", "report"]
    assert body["steps"][0] == {
        "id": body["steps"][0]["id"],
        "position": 0,
        "kind": "ingest",
        "agent": "ingest",
        "status": "pending",
        "progress": 0,
        "started_at": None,
        "finished_at": None,
        "error": None,
    }
    stored: str = await db.fetchval("SELECT doc::text FROM roi_workflows WHERE id = $1", uuid.UUID(created["id"]))
    assert stored.encode() == response.content, "the stored document is what clients get, as it is"


async def test_a_document_stored_before_compaction_reaches_clients_compact(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    older = await create(client, alice, name="older")
    created = await create(client, alice, name=AWKWARD_NAME)
    workflow_id = uuid.UUID(created["id"])
    async with db.acquire() as connection:
        # As 0008's trigger wrote it: PostgreSQL's spacing. Triggers off for this write only, to keep that text.
        await connection.execute("SET session_replication_role = replica")
        await connection.execute(
            "UPDATE roi_workflows SET doc = json_build_object("
            "'id', id, 'name', name, 'created_at', roi_timestamp(created_at), 'steps', '[]'::json) WHERE id = $1",
            workflow_id,
        )
        await connection.execute("RESET session_replication_role")
        assert (
            b'" : '
            in (await connection.fetchval("SELECT doc::text FROM roi_workflows WHERE id = $1", workflow_id)).encode()
        )
    spaced = {"id": created["id"], "name": AWKWARD_NAME, "created_at": created["created_at"], "steps": []}

    response = await client.get(f"/api/workflows/{workflow_id}", headers=alice.headers)
    assert response.status_code == 200
    assert response.content == compact(response.content)
    assert response.json() == spaced
    page = await client.get("/api/workflows", headers=alice.headers)
    assert page.status_code == 200
    assert page.content == compact(page.content), "a page holding such a document is compact too"
    assert [item["id"] for item in page.json()["items"]] == [created["id"], older["id"]]
    assert page.json()["items"][0] == spaced

    # The spaced document ends a page: the next page continues after it, from its own created_at and id.
    first = await client.get("/api/workflows?limit=1", headers=alice.headers)
    assert first.status_code == 200
    assert first.json()["items"] == [spaced]
    following = await client.get(f"/api/workflows?limit=1&cursor={first.json()['next_cursor']}", headers=alice.headers)
    assert following.status_code == 200
    assert [item["id"] for item in following.json()["items"]] == [older["id"]]
    assert following.json()["next_cursor"] is None
