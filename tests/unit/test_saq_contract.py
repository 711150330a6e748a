"""The parts of SAQ that `PriorityRedisQueue` overrides or leans on, pinned as they are in saq 0.26.4.

The priority lanes work by pointing SAQ's `_queued` list at a job's lane while SAQ's own `_enqueue` and `_retry` run,
by replacing its `dequeue`, and by finishing an aborted queued job before its `abort` would look in the wrong list.
A new SAQ that changes any of these may break the lanes without a single error: this test fails first and names
what to re-check. To accept a new SAQ, read each change against the method named in the failure, then update the pin.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import pytest
import saq
from redis.asyncio import Redis
from saq.queue.base import Queue
from saq.queue.redis import RedisQueue
from saq.worker import Worker

from infra.queue import PriorityRedisQueue

PINNED: list[tuple[type, str, str, str, str]] = [
    # (SAQ class, its method, ours to re-check, signature, sha256 of the source's first 16 hex digits)
    (
        RedisQueue,
        "__init__",
        "__init__",
        "(self, redis: 'Redis[bytes]', name: 'str' = 'default', dump: 'DumpType | None' = None, "
        "load: 'LoadType | None' = None, max_concurrent_ops: 'int' = 20, swept_error_message: 'str | None' = None)"
        " -> 'None'",
        "185e71cad7816124",
    ),
    (RedisQueue, "namespace", "__init__", "(self, key: 'str') -> 'str'", "9f9e5409936deac2"),
    (RedisQueue, "disconnect", "disconnect", "(self) -> 'None'", "c26831f9d52f2ba2"),
    (RedisQueue, "_enqueue", "_enqueue", "(self, job: 'Job') -> 'Job | None'", "d679d338ffa37764"),
    (RedisQueue, "_retry", "_retry", "(self, job: 'Job', error: 'str | None') -> 'None'", "70fcf55e86f07ef2"),
    (
        RedisQueue,
        "dequeue",
        "dequeue",
        "(self, timeout: 'float' = 0.0, poll_interval: 'float' = 0.0) -> 'Job | None'",
        "647860b66118b288",
    ),
    (RedisQueue, "abort", "abort", "(self, job: 'Job', error: 'str', ttl: 'float' = 5) -> 'None'", "a75f6118c7e6093c"),
    (RedisQueue, "sweep", "sweep", "(self, lock: 'int' = 60, abort: 'float' = 5.0) -> 'list[str]'", "3777246cdb502e29"),
    (RedisQueue, "count", "count", "(self, kind: 'CountKind') -> 'int'", "8b1e140c631db995"),
    (RedisQueue, "_get_job_by_id", "dequeue", "(self, job_id: 'bytes | str') -> 'Job | None'", "542693ad35371f84"),
    (RedisQueue, "schedule", "__init__", "(self, lock: 'int' = 1) -> 't.List[str]'", "679ae9c98bec1a49"),
    (
        RedisQueue,
        "_finish",
        "abort",
        "(self, job: 'Job', status: 'Status', *, result: 't.Any' = None, error: 'str | None' = None) -> 'None'",
        "3e7c6df61b6b7cf9",
    ),
    (
        Queue,
        "finish",
        "abort",
        "(self, job: 'Job', status: 'Status', *, result: 't.Any' = None, error: 'str | None' = None, "
        "**kwargs: 't.Any') -> 'None'",
        "f9d1ff7dbe348704",
    ),
    (Queue, "retry", "_retry", "(self, job: 'Job', error: 'str | None') -> 'None'", "1a6b1490976b90e8"),
    (Queue, "serialize", "dequeue", "(self, job: 'Job') -> 'bytes | str'", "f91bc7a8912b102a"),
    # `dequeue` writes the record the worker's activation would (start, attempt, worker id) and `_update` skips it.
    (Worker, "process", "dequeue", "(self) -> 'bool'", "9517b7805148a806"),
    (Queue, "update", "_update", "(self, job: 'Job', **kwargs: 't.Any') -> 'None'", "a5eddd4e4191f066"),
]


def source_hash(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("owner", "name", "ours", "signature", "digest"),
    PINNED,
    ids=[f"{owner.__name__}.{name}" for owner, name, *_ in PINNED],
)
def test_saq_is_as_the_priority_lanes_were_written_against(
    owner: type, name: str, ours: str, signature: str, digest: str
) -> None:
    assert hasattr(PriorityRedisQueue, ours), f"PriorityRedisQueue.{ours} is gone: update this pin"
    function = owner.__dict__.get(name)
    changed = f"SAQ {saq.__version__} changed {owner.__name__}.{name}: re-check PriorityRedisQueue.{ours}"
    assert function is not None, f"{changed} (it no longer defines it)"
    assert str(inspect.signature(function)) == signature, f"{changed} (its signature)"
    assert source_hash(function) == digest, f"{changed} (its code)"


def test_the_lists_the_lanes_are_built_on_are_still_saqs() -> None:
    """The normal lane is SAQ's own `_queued` list; `dequeue` moves jobs to `_active` and forgets `_incomplete` ones."""
    queue = PriorityRedisQueue(Redis(), name="pinned")
    assert queue.lanes == ["saq:pinned:queued:high", "saq:pinned:queued", "saq:pinned:queued:low"]
    assert (queue._active, queue._incomplete) == ("saq:pinned:active", "saq:pinned:incomplete")
