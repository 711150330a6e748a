"""Lists page by cursor: every item once, in order, while others are created; a foreign or forged cursor is a 400."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.integration.support import Account
from tests.integration.test_workflows import create

ITEMS = 23
PAGE = 5


async def seed(db: asyncpg.Pool, owner: str, count: int, status: str = "draft") -> None:
    """Workflows with distinct creation times, some sharing one (the id breaks the tie)."""
    await db.execute(
        "INSERT INTO roi_workflows (id, owner_id, name, status, priority, progress, parameters, created_at, updated_at)"
        " SELECT gen_random_uuid(), $1, 'w' || i, $3, 'normal', 0, '{}',"
        " '2026-01-01'::timestamptz + make_interval(secs => i / 3), now() FROM generate_series(1, $2) AS i",
        uuid.UUID(owner),
        count,
        status,
    )


async def walk(client: AsyncTestClient, account: Account, query: str = "") -> tuple[list[str], list[dict[str, Any]]]:
    """Every page of a list through `next_cursor`: the ids in the order served, and the pages."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        answer = await client.get(f"/api/workflows?limit={PAGE}{query}{suffix}", headers=account.headers)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return [item["id"] for page in pages for item in page["items"]], pages


async def test_cursor_pages_serve_every_item_once_newest_first(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    await seed(db, alice.id, ITEMS)
    by_offset = (await client.get("/api/workflows?limit=200", headers=alice.headers)).json()

    ids, pages = await walk(client, alice)

    assert ids == [item["id"] for item in by_offset["items"]]
    assert len(set(ids)) == ITEMS
    assert [len(page["items"]) for page in pages] == [5, 5, 5, 5, 3]
    assert {page["total"] for page in pages} == {ITEMS}


async def test_pages_stay_stable_while_new_workflows_are_created(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    await seed(db, alice.id, ITEMS)
    first = (await client.get(f"/api/workflows?limit={PAGE}", headers=alice.headers)).json()
    seen = [item["id"] for item in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        await create(client, alice)  # newer than everything: belongs before the first page, never inside the walk
        page = (await client.get(f"/api/workflows?limit={PAGE}&cursor={cursor}", headers=alice.headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen)) == ITEMS


async def test_a_status_filter_pages_by_cursor_and_counts_only_its_status(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    await seed(db, alice.id, 12, "failed")
    await seed(db, alice.id, 7, "succeeded")
    ids, pages = await walk(client, alice, "&status=failed")
    assert len(ids) == len(set(ids)) == 12
    assert {page["total"] for page in pages} == {12}
    statuses = {item["status"] for page in pages for item in page["items"]}
    assert statuses == {"failed"}


async def test_a_cursor_only_continues_its_own_list(
    client: AsyncTestClient, alice: Account, bob: Account, db: asyncpg.Pool
) -> None:
    await seed(db, alice.id, 8)
    await seed(db, bob.id, 8)
    cursor = (await client.get("/api/workflows?limit=2", headers=alice.headers)).json()["next_cursor"]
    flipped = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]

    for who, query in [
        (bob, f"cursor={cursor}"),
        (alice, f"cursor={cursor}&status=draft"),
        (alice, f"cursor={flipped}"),
        (alice, "cursor=junk"),
        (alice, f"cursor={cursor}&offset=2"),
    ]:
        answer = await client.get(f"/api/workflows?limit=2&{query}", headers=who.headers)
        assert answer.status_code == 400, (query, answer.text)
        assert "cursor" in answer.json()["detail"]
        assert "items" not in answer.json()


async def test_offset_is_bounded_and_points_to_the_cursor(client: AsyncTestClient, alice: Account) -> None:
    assert (await client.get("/api/workflows?offset=10000", headers=alice.headers)).status_code == 200
    deep = await client.get("/api/workflows?offset=10001", headers=alice.headers)
    assert deep.status_code == 400
    assert "cursor" in deep.json()["detail"]


async def test_total_follows_creates_and_deletes_through_the_api(client: AsyncTestClient, alice: Account) -> None:
    created = [await create(client, alice) for _ in range(4)]
    assert (await client.delete(f"/api/workflows/{created[0]['id']}", headers=alice.headers)).status_code == 204
    page = (await client.get("/api/workflows?limit=1", headers=alice.headers)).json()
    assert page["total"] == 3
    assert page["next_cursor"] is not None


async def test_uploads_page_by_cursor_too_and_refuse_another_user_s_cursor(
    client: AsyncTestClient, alice: Account, bob: Account, db: asyncpg.Pool
) -> None:
    await db.execute(
        "INSERT INTO uploads (id, owner_id, length, upload_offset, status, created_at, updated_at)"
        " SELECT gen_random_uuid(), $1, 10, 0, 'uploading', '2026-01-01'::timestamptz + make_interval(secs => i / 2),"
        " now() FROM generate_series(1, 11) AS i",
        uuid.UUID(alice.id),
    )
    seen: list[str] = []
    query = "limit=4"
    while True:
        page = (await client.get(f"/api/uploads?{query}", headers=alice.headers)).json()
        assert page["total"] == 11
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        query = f"limit=4&cursor={page['next_cursor']}"
    assert len(seen) == len(set(seen)) == 11

    first_cursor = (await client.get("/api/uploads?limit=4", headers=alice.headers)).json()["next_cursor"]
    stolen = await client.get(f"/api/uploads?cursor={first_cursor}", headers=bob.headers)
    assert stolen.status_code == 400
    assert "cursor" in stolen.json()["detail"]
