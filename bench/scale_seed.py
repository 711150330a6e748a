"""The scale scenario's databases: seeded once per size and schema revision as a template database, copied per run.

Why SQL and not the API: a million workflows through `POST /api/workflows` would take hours; `INSERT ... SELECT
generate_series` takes minutes. Rows are what the service writes itself: users who can log in (the hash of a known
password), workflows in every status with their parameters, cash flows, times and 4 steps each consistent with that
status, and their `doc` computed by the migrations' own document trigger. The rest of the triggers (counts, the
steps' refresh of `doc`) and the foreign-key checks are off for the bulk insert (`session_replication_role =
replica`); the counts are filled with one `GROUP BY` instead, then the whole database is vacuumed and analysed.

The template is named after its size and the Alembic head (`roi_bench_scale_1000000_v0005`). After a schema change,
the newest template of an earlier revision is copied and migrated to the head, as a deployed database would be (seconds
for a new table, rather than minutes of seeding); with none, a new one is seeded. Its comment records the seed's format
and time, so a change of this file's rows reseeds. A run works
on a copy (`CREATE DATABASE ... TEMPLATE`), dropped afterwards; the template stays for the next run.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import asyncpg
import click
import msgspec
from sqlalchemy.engine import make_url

from bench.service import BenchFailed
from db.pools import asyncpg_dsn
from domain.pagination import MAX_OFFSET

SEED_FORMAT = 1
"""Raise it when the seeded rows change: templates of another format are seeded again."""
PASSWORD = "roi-bench-scale"
PAGE = 50
"""The items of every page the scenario reads."""
BIG_USER_EMAIL = "scale-big@bench.example"
MAX_PER_USER = 900
MEASURED_MIN = MAX_OFFSET + 2 * PAGE
"""The measured user's fewest workflows: a full page at the deepest offset allowed, and a page after it."""
STEPS = ("ingest", "validate", "analyze", "report")
IN_USE_ATTEMPTS = 5
"""CREATE DATABASE ... TEMPLATE and a rename fail while another session is on the database (autovacuum, a copy)."""


class Shape(msgspec.Struct, frozen=True):
    """Who owns the workflows: the measured user with a tenth of them, but never fewer than MEASURED_MIN, and the
    rest in users of MAX_PER_USER each: 1,000,000 is one user with 100,000 and 1,000 users x 900; 11,000 (the small
    size) is one with 10,100 and 1 x 900.

    Why the floor: every read must answer the same at both sizes for their times to compare. A full page at
    `offset=10000` with a page after it needs 10,100 workflows of that user, so no database of 1,000 can be the
    small twin of a 1,000,000 one; the smallest that answers every row alike is 11,000."""

    workflows: int
    big_user: int
    users: int
    per_user: int

    @classmethod
    def of(cls, workflows: int) -> Shape:
        big_user = max(workflows // 10, MEASURED_MIN)
        rest = workflows - big_user
        if workflows % 1000 or rest < 0 or rest % MAX_PER_USER:
            raise click.BadParameter(
                f"{workflows:,} workflows: the scale scenario seeds a multiple of 1,000 that leaves, besides the "
                f"measured user's {big_user:,}, a multiple of {MAX_PER_USER} (at least {MEASURED_MIN + MAX_PER_USER:,})"
            )
        return cls(workflows, big_user, rest // MAX_PER_USER, MAX_PER_USER)

    def describe(self) -> str:
        users = "user" if self.users == 1 else "users"
        return f"{self.users:,} {users} x {self.per_user:,} + one user with {self.big_user:,}"


class Seeded(msgspec.Struct, frozen=True):
    """What a template's comment records about its seed."""

    format: int
    seed_s: float
    seeded_at: datetime.datetime
    upgraded_from: str | None = None
    """The template this one was migrated from, rather than seeded."""


class ScaleDatabase(msgspec.Struct):
    """A run's working copy of a template, with what the seed and the copy took and what the rows weigh."""

    shape: Shape
    template: str
    url: str
    seeded_now: bool
    seed_s: float
    seeded_at: datetime.datetime
    upgraded_from: str | None
    copy_s: float
    database_bytes: int
    workflow_table_bytes: int
    workflow_index_bytes: int
    step_table_bytes: int
    step_index_bytes: int

    @property
    def bytes_per_workflow(self) -> float:
        """roi_workflows and workflow_steps (4 a workflow) with their indexes and TOAST, over the workflows."""
        total = self.workflow_table_bytes + self.workflow_index_bytes + self.step_table_bytes + self.step_index_bytes
        return total / self.shape.workflows


def head_revision(database_url: str) -> str:
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert head is not None
    return head


def template_name(workflows: int, revision: str) -> str:
    return f"roi_bench_scale_{workflows}_v{revision}"


def earlier_revisions(database_url: str) -> list[str]:
    """The head's ancestors, newest first: the revisions whose templates can be migrated to the head."""
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(database_url))
    return [revision.revision for revision in script.iterate_revisions("heads", "base")][1:]


@contextmanager
def scale_database(server_url: str, workflows: int) -> Iterator[ScaleDatabase]:
    """A copy of the template of `workflows` rows (seeded first if there is none), dropped when the block ends."""
    shape = Shape.of(workflows)
    template = template_name(workflows, head_revision(server_url))
    seeded_now = False
    seeded = asyncio.run(_seeded(server_url, template))
    if seeded is None:
        seeded = _upgraded_template(server_url, workflows, template)
    if seeded is None:
        seeded = _seed_template(server_url, shape, template)
        seeded_now = True
    copy = f"roi_bench_scale_{workflows}_{secrets.token_hex(4)}"
    started = time.perf_counter()
    asyncio.run(_copy(server_url, template, copy))
    copy_s = time.perf_counter() - started
    url = _database_url(server_url, copy)
    try:
        sizes = asyncio.run(_sizes(url))
        yield ScaleDatabase(
            shape, template, url, seeded_now, seeded.seed_s, seeded.seeded_at, seeded.upgraded_from, copy_s, *sizes
        )
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)'))


def _database_url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _admin(server_url: str, *statements: str) -> None:
    """Statements on the server's own database, each retried while a database it names is in use (autovacuum)."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        for statement in statements:
            for attempt in range(1, IN_USE_ATTEMPTS + 1):
                try:
                    await connection.execute(statement)
                    break
                except asyncpg.ObjectInUseError:
                    if attempt == IN_USE_ATTEMPTS:
                        raise
                    await asyncio.sleep(attempt)
    finally:
        await connection.close()


async def _seeded(server_url: str, template: str) -> Seeded | None:
    """The template's seed record, or None when there is none (or of another format: then it is dropped)."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        row = await connection.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1", template
        )
        if row is None:
            return None
        with suppress(msgspec.ValidationError, msgspec.DecodeError, TypeError):
            seeded = msgspec.json.decode(row["comment"], type=Seeded)
            if seeded.format == SEED_FORMAT:
                return seeded
        click.echo(f"scale: {template} is of another seed format; seeding it again", err=True)
        await connection.execute(f'ALTER DATABASE "{template}" IS_TEMPLATE false')
        await connection.execute(f'DROP DATABASE "{template}" WITH (FORCE)')
        return None
    finally:
        await connection.close()


def _upgraded_template(server_url: str, workflows: int, template: str) -> Seeded | None:
    """The newest template of an earlier revision, copied and migrated to the head; None when there is none."""
    from db.migrate import upgrade

    for revision in earlier_revisions(server_url):
        earlier = template_name(workflows, revision)
        seeded = asyncio.run(_seeded(server_url, earlier))
        if seeded is None:
            continue
        building = f"{template}_building_{secrets.token_hex(4)}"
        click.echo(f"scale: migrating a copy of {earlier} to {template}", err=True)
        started = time.perf_counter()
        asyncio.run(_copy(server_url, earlier, building))
        try:
            upgrade(_database_url(server_url, building))
            asyncio.run(_vacuum(_database_url(server_url, building)))
            upgraded = msgspec.structs.replace(seeded, upgraded_from=earlier)
            _publish_template(server_url, building, template, upgraded)
        finally:
            asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
        click.echo(f"scale: migrated {template} in {time.perf_counter() - started:.1f} s", err=True)
        return upgraded
    return None


async def _vacuum(database_url: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute("VACUUM (ANALYZE)")
    finally:
        await connection.close()


def _publish_template(server_url: str, building: str, template: str, seeded: Seeded) -> None:
    """Record the seed in the database's comment and rename it to the template's name, unless a concurrent run
    published one first."""
    comment = msgspec.json.encode(seeded).decode().replace("'", "''")
    asyncio.run(_admin(server_url, f"COMMENT ON DATABASE \"{building}\" IS '{comment}'"))
    try:
        asyncio.run(
            _admin(
                server_url,
                f'ALTER DATABASE "{building}" RENAME TO "{template}"',
                f'ALTER DATABASE "{template}" IS_TEMPLATE true',
            )
        )
    except asyncpg.DuplicateDatabaseError:
        click.echo(f"scale: another run made {template} meanwhile; using that one", err=True)


def _seed_template(server_url: str, shape: Shape, template: str) -> Seeded:
    """Seed under a name of its own, then rename: a seed that fails or is interrupted never leaves a template."""
    from db.migrate import upgrade

    building = f"{template}_building_{secrets.token_hex(4)}"
    click.echo(f"scale: seeding {template}: {shape.workflows:,} workflows ({shape.describe()})", err=True)
    started = time.perf_counter()
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{building}"'))
    try:
        upgrade(_database_url(server_url, building))
        asyncio.run(_seed(_database_url(server_url, building), shape))
        seeded = Seeded(SEED_FORMAT, time.perf_counter() - started, datetime.datetime.now(datetime.UTC))
        _publish_template(server_url, building, template, seeded)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
    click.echo(f"scale: seeded {template} in {seeded.seed_s:.1f} s", err=True)
    return seeded


async def _copy(server_url: str, template: str, copy: str) -> None:
    """A file copy where the server has it (PostgreSQL 15+): much faster than the WAL-logged default at GBs."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        version = int(await connection.fetchval("SHOW server_version_num"))
    finally:
        await connection.close()
    strategy = " STRATEGY = FILE_COPY" if version >= 150000 else ""
    try:
        await _admin(server_url, f'CREATE DATABASE "{copy}" TEMPLATE "{template}"{strategy}')
    except asyncpg.PostgresError as error:
        raise BenchFailed(f"scale: cannot copy {template}: {error}") from error


async def _sizes(database_url: str) -> tuple[int, int, int, int, int]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row = await connection.fetchrow(SIZES)
    finally:
        await connection.close()
    assert row is not None
    database, workflows, workflow_indexes, steps, step_indexes = row
    return database, workflows, workflow_indexes, steps, step_indexes


SIZES = """
SELECT pg_database_size(current_database()),
    pg_total_relation_size('roi_workflows') - pg_indexes_size('roi_workflows'), pg_indexes_size('roi_workflows'),
    pg_total_relation_size('workflow_steps') - pg_indexes_size('workflow_steps'), pg_indexes_size('workflow_steps')"""


async def _seed(database_url: str, shape: Shape) -> None:
    from domain.accounts.passwords import hash_password

    password_hash = await hash_password(PASSWORD)
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        try:
            await connection.execute("SET session_replication_role = replica")
        except asyncpg.InsufficientPrivilegeError as error:
            raise BenchFailed(f"scale: seeding needs a superuser on PostgreSQL: {error}") from error
        anchor = await connection.fetchval("SELECT date_trunc('second', now())")
        await _step(connection, "users", INSERT_USERS, shape.users, BIG_USER_EMAIL, password_hash, anchor)
        await _step(connection, "staging", STAGE_WORKFLOWS, shape.users, shape.big_user, shape.per_user, anchor)
        await _step(connection, "steps", INSERT_STEPS)
        # Only the document trigger fires for the workflows: it reads the steps inserted just before.
        await connection.execute("ALTER TABLE roi_workflows ENABLE ALWAYS TRIGGER roi_workflow_document")
        await _step(connection, "workflows", INSERT_WORKFLOWS, anchor)
        await connection.execute("ALTER TABLE roi_workflows ENABLE TRIGGER roi_workflow_document")
        await _step(connection, "counts", INSERT_COUNTS)
        await connection.execute("DROP TABLE scale_seed")
        await connection.execute("RESET session_replication_role")
        await _check(connection, shape)
        await _step(connection, "vacuum", "VACUUM (FREEZE, ANALYZE)")
    finally:
        await connection.close()


async def _step(connection: asyncpg.Connection, what: str, statement: str, *arguments: object) -> None:
    started = time.perf_counter()
    await connection.execute(statement, *arguments)
    click.echo(f"scale: seed {what}: {time.perf_counter() - started:.1f} s", err=True)


async def _check(connection: asyncpg.Connection, shape: Shape) -> None:
    """The rows, counts and documents the bench relies on, before the template is kept."""
    row = await connection.fetchrow(CHECK)
    assert row is not None
    expected = (shape.workflows, shape.workflows * len(STEPS), shape.workflows, 0)
    if tuple(row) != expected:
        raise BenchFailed(
            "scale: the seed is inconsistent: (workflows, steps, counted, documents without 4 steps) = "
            f"{tuple(row)}, expected {expected}"
        )


CHECK = """
SELECT (SELECT count(*) FROM roi_workflows), (SELECT count(*) FROM workflow_steps),
    (SELECT sum(n) FROM workflow_counts),
    (SELECT count(*) FROM roi_workflows WHERE json_array_length(doc -> 'steps') <> 4)"""

# User 0 is the big one. Ids are derived from the number, so the staging table can name owners without a join.
INSERT_USERS = """
INSERT INTO users (id, email, name, password_hash, is_admin, created_at, updated_at)
SELECT md5('roi bench scale user ' || u)::uuid,
    CASE WHEN u = 0 THEN $2 ELSE format('scale-%s@bench.example', lpad(u::text, 4, '0')) END,
    format('Scale user %s', u), $3, false, $4::timestamptz - interval '400 days', $4::timestamptz - interval '400 days'
FROM generate_series(0, $1::int) u"""

# Per user, workflow k of c: created over the year before the seed, about one in ten sharing its time with the one
# before (floor(k * 0.9)), users a few seconds apart. The status comes from k's place in a permutation of 0..99, so
# every 100 consecutive workflows of a user hold exactly 25 drafts, 44 succeeded, 15 failed, 14 cancelled, 1 queued
# and 1 running; `stop` is the step a failed, cancelled or running workflow stopped at (4: cancelled while queued).
STAGE_WORKFLOWS = """
CREATE UNLOGGED TABLE scale_seed AS
SELECT gen_random_uuid() AS id, md5('roi bench scale user ' || u)::uuid AS owner_id, k,
    $4::timestamptz - interval '1 hour' + u * interval '7 seconds'
        - interval '365 days' * (1 - floor(k * 0.9) / (c * 0.9)) AS created_at,
    CASE WHEN b < 25 THEN 'draft' WHEN b < 69 THEN 'succeeded' WHEN b < 84 THEN 'failed'
        WHEN b < 98 THEN 'cancelled' WHEN b < 99 THEN 'queued' ELSE 'running' END AS status,
    CASE WHEN b >= 84 AND b < 98 THEN (k * 13 + u) % 5 ELSE (k * 13 + u) % 4 END AS stop
FROM (SELECT u, CASE WHEN u = 0 THEN $2::int ELSE $3::int END AS c FROM generate_series(0, $1::int) u) users
CROSS JOIN LATERAL generate_series(0, c - 1) k
CROSS JOIN LATERAL (SELECT (k * 37 + u * 11) % 100 AS b) bucket"""

# A step's status follows its workflow's, as the runner and the service leave them: before `stop` succeeded, at it
# failed, cancelled or running, after it skipped (pending while running); all pending in a draft or a queued one.
INSERT_STEPS = """
INSERT INTO workflow_steps (id, workflow_id, position, kind, agent, status, progress, started_at, finished_at, error,
    created_at, updated_at)
SELECT gen_random_uuid(), w.id, p, kind, kind, s.status,
    CASE s.status WHEN 'succeeded' THEN 1.0 WHEN 'running' THEN 0.5 WHEN 'failed' THEN 0.3 WHEN 'cancelled' THEN 0.4
        ELSE 0.0 END,
    CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled', 'running') THEN s.started_at END,
    CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled') THEN s.started_at + interval '0.4 s' END,
    CASE WHEN s.status = 'failed' THEN kind || ': the agent gave up: the cash flows change sign more than once' END,
    w.created_at,
    CASE WHEN s.status = 'pending' THEN w.created_at ELSE s.started_at + interval '0.4 s' END
FROM scale_seed w
CROSS JOIN LATERAL (VALUES (0, 'ingest'), (1, 'validate'), (2, 'analyze'), (3, 'report')) AS steps (p, kind)
CROSS JOIN LATERAL (SELECT
    CASE
        WHEN w.status IN ('draft', 'queued') THEN 'pending'
        WHEN w.status = 'cancelled' AND w.stop = 4 THEN 'skipped'
        WHEN w.status = 'succeeded' OR p < w.stop THEN 'succeeded'
        WHEN p > w.stop THEN CASE w.status WHEN 'running' THEN 'pending' ELSE 'skipped' END
        ELSE CASE w.status WHEN 'failed' THEN 'failed' WHEN 'running' THEN 'running' ELSE 'cancelled' END
    END AS status,
    w.created_at + interval '1 minute' + p * interval '0.5 s' AS started_at
) s"""

INSERT_WORKFLOWS = """
INSERT INTO roi_workflows (id, owner_id, name, description, status, priority, progress, current_step, parameters,
    cash_flows, upload_id, job_id, queued_at, started_at, finished_at, error, created_at, updated_at, heartbeat_at, doc)
SELECT id, owner_id,
    (ARRAY['New warehouse', 'Solar roof', 'Fleet renewal', 'ERP migration', 'Store refit', 'Packaging line',
        'Data centre', 'Training programme'])[1 + k % 8] || ' ' || (k + 1),
    CASE WHEN k % 3 = 0 THEN 'Five-year case for the board, figures from finance' END,
    status,
    CASE k % 10 WHEN 0 THEN 'high' WHEN 1 THEN 'low' ELSE 'normal' END,
    CASE WHEN status = 'succeeded' THEN 1.0 WHEN status IN ('failed', 'cancelled', 'running') AND stop < 4
        THEN stop / 4.0 ELSE 0.0 END,
    CASE WHEN status = 'running' THEN (ARRAY['ingest', 'validate', 'analyze', 'report'])[stop + 1] END,
    jsonb_build_object('discount_rate', 0.02 + (k % 14) * 0.01, 'simulations', 0, 'volatility', 0.1, 'seed', NULL),
    ARRAY[-1000 - (k % 50) * 100, 300, 400, 500, 250 + (k % 7) * 10, 200]::float8[],
    NULL,
    CASE WHEN status <> 'draft' THEN replace(gen_random_uuid()::text, '-', '') END,
    CASE WHEN status <> 'draft' THEN created_at + interval '1 minute' END,
    CASE WHEN status IN ('succeeded', 'failed', 'running') OR status = 'cancelled' AND stop < 4
        THEN created_at + interval '1 minute' END,
    CASE WHEN status IN ('succeeded', 'failed', 'cancelled') THEN created_at + interval '1 minute 2 seconds' END,
    CASE WHEN status = 'failed' THEN (ARRAY['ingest', 'validate', 'analyze', 'report'])[stop + 1]
        || ': the agent gave up: the cash flows change sign more than once' END,
    created_at,
    CASE WHEN status = 'draft' THEN created_at ELSE created_at + interval '1 minute 2 seconds' END,
    CASE WHEN status = 'running' THEN $1::timestamptz END,
    '{}'
FROM scale_seed"""

INSERT_COUNTS = """
INSERT INTO workflow_count_totals (owner_id, status, n)
SELECT owner_id, status, count(*) FROM roi_workflows GROUP BY 1, 2"""
