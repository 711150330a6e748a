"""The read paths stay cheap as data grows: constant statements per request, and the list uses its index."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from db.pools import create_asyncpg_pool
from db.statements import ExecutedStatement
from domain.uploads import queries as upload_queries
from domain.workflows import queries
from infra.settings import Settings
from tests.integration.support import Account, served_by_request
from tests.integration.test_workflows import create


async def add_steps(db: asyncpg.Pool, workflow_id: uuid.UUID, count: int, first_position: int) -> None:
    await db.execute(
        """
        INSERT INTO workflow_steps (id, workflow_id, position, kind, agent, status, progress, created_at, updated_at)
        SELECT gen_random_uuid(), $1, p, 'analyze', 'analyze', 'pending', 0, now(), now()
        FROM generate_series($2::int, $3::int) AS p""",
        workflow_id,
        first_position,
        first_position + count - 1,
    )


async def statements_for(client: AsyncTestClient, path: str, headers: dict[str, str]) -> tuple[list[str], Any]:
    seen: list[ExecutedStatement] = []
    observers = client.app.state.services.query_observers
    observers.append(seen.append)
    try:
        response = await client.get(path, headers=headers)
    finally:
        observers.remove(seen.append)
    assert response.status_code == 200, response.text
    return [statement.sql for statement in seen if served_by_request(statement)], response.json()


async def test_detail_is_one_statement_for_one_step_or_two_hundred(
    client: AsyncTestClient, alice: Account, db: asyncpg.Pool
) -> None:
    small = uuid.UUID((await create(client, alice))["id"])
    large = uuid.UUID((await create(client, alice))["id"])
    await db.execute("DELETE FROM workflow_steps WHERE workflow_id = $1 AND position > 0", small)
    await add_steps(db, large, 196, first_position=4)

    small_sql, small_body = await statements_for(client, f"/api/workflows/{small}", alice.headers)
    large_sql, large_body = await statements_for(client, f"/api/workflows/{large}", alice.headers)

    assert len(small_body["steps"]) == 1
    assert len(large_body["steps"]) == 200
    assert [step["position"] for step in large_body["steps"]] == list(range(200))
    assert len(small_sql) == len(large_sql) == 1


async def test_list_and_status_are_one_statement_each(client: AsyncTestClient, alice: Account) -> None:
    for _ in range(3):
        workflow = await create(client, alice)
    list_sql, page = await statements_for(client, "/api/workflows", alice.headers)
    status_sql, _ = await statements_for(client, f"/api/workflows/{workflow['id']}/status", alice.headers)
    assert page["total"] == 3
    assert len(list_sql) == 1
    assert len(status_sql) == 1


async def seed_many_workflows(db: asyncpg.Pool, owners: list[uuid.UUID], per_owner: int) -> None:
    await db.execute(
        """
        INSERT INTO roi_workflows (id, owner_id, name, status, priority, progress, parameters, created_at, updated_at)
        SELECT gen_random_uuid(), o, 'seeded', (ARRAY['draft','succeeded','failed'])[1 + i % 3], 'normal', 0,
               '{"discount_rate": 0.1}', now() - make_interval(secs => i), now()
        FROM unnest($1::uuid[]) AS o, generate_series(1, $2) AS i""",
        owners,
        per_owner,
    )
    await db.execute("VACUUM ANALYZE roi_workflows")  # as autovacuum keeps it: index-only scans see the visibility map


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(plan_nodes(child))
    return nodes


async def explain(db: asyncpg.Pool, sql: str, *args: object) -> list[dict[str, Any]]:
    """The plan's nodes with whole-table and bitmap scans priced out, as they lose to the indexes at scale: tables this
    small would otherwise be read whole, or a few rows fetched by bitmap and sorted."""
    async with db.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL enable_bitmapscan = off")
        raw = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return plan_nodes(json.loads(raw)[0]["Plan"])


async def explain_reused(pool: asyncpg.Pool, sql: str, *args: object) -> list[dict[str, Any]]:
    """The plan a pool of the service's runs `sql` with on every request (prepared once per connection), priced as
    `explain` prices it; the arguments are written as literals, which EXECUTE converts to the statement's types."""
    literals = ", ".join("'" + str(arg).replace("'", "''") + "'" for arg in args)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL enable_bitmapscan = off")
        await connection.execute(f"PREPARE roi_reused AS {sql}")
        raw = await connection.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE roi_reused({literals})")
        await connection.execute("DEALLOCATE roi_reused")
    return plan_nodes(json.loads(raw)[0]["Plan"])


async def test_every_read_is_an_index_range_scan_without_sort_or_count(
    client: AsyncTestClient, alice: Account, bob: Account, db: asyncpg.Pool, settings: Settings
) -> None:
    others = [uuid.uuid4() for _ in range(40)]
    await db.executemany(
        "INSERT INTO users (id, email, name, password_hash, is_admin, created_at, updated_at)"
        " VALUES ($1, $2, 'x', 'x', false, now(), now())",
        [(owner, f"{owner}@example.com") for owner in others],
    )
    await seed_many_workflows(db, [uuid.UUID(alice.id), *others], per_owner=500)
    owner = uuid.UUID(alice.id)
    workflow_id, created_at = await db.fetchrow(
        "SELECT id, created_at FROM roi_workflows WHERE owner_id = $1 LIMIT 1", owner
    )

    service_pool = await create_asyncpg_pool(settings, "roi-test", max_size=1)
    for sql, args in [
        (queries.WORKFLOW_PAGE, (owner, 51, 0)),
        (queries.WORKFLOW_PAGE_WITH_STATUS, (owner, 51, 0, "failed")),
        (queries.WORKFLOW_PAGE_AT_OFFSET, (owner, 51, 300)),
        (queries.WORKFLOW_PAGE_WITH_STATUS_AT_OFFSET, (owner, 51, 100, "failed")),
        (queries.WORKFLOW_PAGE_AFTER, (owner, 51, 0, created_at, workflow_id)),
        (queries.WORKFLOW_PAGE_WITH_STATUS_AFTER, (owner, 51, 0, "failed", created_at, workflow_id)),
        (queries.WORKFLOW_DETAIL, (workflow_id, owner)),
        (queries.OWNED_WORKFLOW_STATUS, (workflow_id,)),
        (queries.WORKFLOW_RESULT, (workflow_id, owner)),
        (upload_queries.UPLOAD_PAGE, (owner, 51, 0)),
        (upload_queries.UPLOAD_PAGE_AFTER, (owner, 51, 0, created_at, workflow_id)),
        (upload_queries.UPLOAD_DETAIL, (workflow_id, owner)),
    ]:
        reused = await explain_reused(service_pool, sql, *args)
        # Planned once for any arguments, not again on every request: its conditions name the parameters.
        assert "$1" in json.dumps(reused), f"the service's pool re-plans {sql} on every request"
        for nodes in (await explain(db, sql, *args), reused):
            assert_range_scan(sql, nodes)
    await service_pool.close()

    page = (await client.get("/api/workflows?status=failed&limit=50", headers=alice.headers)).json()
    assert page["total"] == 167
    assert len(page["items"]) == 50
    created = [item["created_at"] for item in page["items"]]
    assert created == sorted(created, reverse=True)


def assert_range_scan(sql: str, nodes: list[dict[str, Any]]) -> None:
    """An index range scan of the owner's rows, or a lookup by key: no sort, no count over all of them."""
    kinds = [node["Node Type"] for node in nodes]
    assert "Seq Scan" not in kinds, (sql, kinds)
    assert "Sort" not in kinds, (sql, kinds)
    scans = [node for node in nodes if "Scan" in node["Node Type"]]
    assert scans, (sql, kinds)
    for scan in scans:
        assert "ROW(" not in scan.get("Filter", ""), f"the cursor's position must bound the index scan: {scan}"
        if scan.get("Relation Name") in ("roi_workflows", "uploads"):
            assert scan["Index Name"].startswith(("pk_", "idx_workflow_owner", "idx_upload_owner")), scan
    counted = [node for node in nodes if node["Node Type"] == "Aggregate" and _unbounded_under(node)]
    assert not counted, f"a count over the user's workflows: {sql}"


def _unbounded_under(node: dict[str, Any]) -> bool:
    """Whether `node` reads workflows or uploads below it with no Limit in between: an aggregate over the rows of a
    page (joining its items into one JSON array) reads at most the page; one over the user's rows reads them all."""
    for child in node.get("Plans", []):
        if child["Node Type"] == "Limit":
            continue
        if child.get("Relation Name") in ("roi_workflows", "uploads") or _unbounded_under(child):
            return True
    return False
