"""Every long-lived client and service of a process, built once from the settings and closed once.

The API and the job workers open the same container (the API a few parts more), so a service is wired one way
wherever it runs, and nothing looks its collaborators up by name at request time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from litestar.datastructures import State
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from db.pools import create_asyncpg_pool
from db.statements import StatementObserver
from domain.accounts.revocation import RevocationFeed
from domain.accounts.security import BearerTokenAuth, TokenIssuer
from domain.accounts.throttle import LoginThrottle
from domain.agents.service import AgentReader
from domain.cache import Cache, CacheOutcome, ignore_outcome
from domain.events.bus import EventBus
from domain.pagination import CursorSigner
from domain.uploads.repository import UploadRepository
from domain.uploads.s3_storage import S3Storage, open_bucket
from domain.uploads.service import UploadService
from domain.uploads.storage import UploadStorage, local_storage
from domain.workflows.counts import CountFolder
from domain.workflows.runs import RunQueue
from domain.workflows.service import WorkflowReader
from infra.closing import close_within
from infra.queue import PriorityRedisQueue, create_queue
from infra.redis import create_cache_redis
from infra.redis_batch import PipelinedGet
from infra.settings import Settings

WORKER_REDIS_CONNECTIONS = 32


def upload_storage(settings: Settings) -> UploadStorage:
    if settings.upload_store.startswith("s3://"):
        return S3Storage(open_bucket(settings.upload_store))
    return local_storage(settings.roi_data_dir)


@dataclass
class Services:
    """What a job worker needs: the engine, Redis, the cache and events, the queue, the upload bytes."""

    settings: Settings
    engine: AsyncEngine
    redis: Redis
    cache: Cache
    events: EventBus
    queue: PriorityRedisQueue
    storage: UploadStorage
    run_pool: asyncpg.Pool = field(init=False)
    """The workers' asyncpg pool for the writes of runs (their hot path); set by the worker once it is open."""

    @classmethod
    def open(cls, settings: Settings, engine: AsyncEngine) -> Services:
        redis_url = _redis_url(settings)
        redis = create_cache_redis(redis_url, WORKER_REDIS_CONNECTIONS, settings.redis_timeout_s)
        return cls(
            settings=settings,
            engine=engine,
            redis=redis,
            cache=Cache(redis, settings.redis_namespace),
            events=_events(settings, redis),
            queue=create_queue(redis_url, settings.redis_namespace),
            storage=upload_storage(settings),
        )

    async def close(self) -> None:
        """Everything but the engine, which its owner disposes last (a session may still be closing)."""
        await close_within("the queue", self.queue.disconnect())
        await close_within("the cache", self.cache.close())
        await close_within("Redis", self.redis.aclose())
        run_pool: asyncpg.Pool | None = getattr(self, "run_pool", None)
        if run_pool is not None and not await close_within("the runs' asyncpg pool", run_pool.close()):
            run_pool.terminate()


@dataclass
class ApiServices(Services):
    """The API's: also the asyncpg pool, the batched cache reads and the services the controllers call."""

    jwt_auth: BearerTokenAuth = field(kw_only=True)
    tokens: TokenIssuer = field(kw_only=True)
    revocations: RevocationFeed = field(kw_only=True)
    count_folder: CountFolder = field(kw_only=True)
    asyncpg_pool: asyncpg.Pool = field(kw_only=True)
    batched_reads: PipelinedGet = field(kw_only=True)
    cursors: CursorSigner = field(kw_only=True)
    workflows: WorkflowReader = field(kw_only=True)
    runs: RunQueue = field(kw_only=True)
    agents: AgentReader = field(kw_only=True)
    uploads: UploadService = field(kw_only=True)
    login_throttle: LoginThrottle = field(kw_only=True)
    query_observers: list[StatementObserver] = field(kw_only=True)
    """Told of every statement on both pools: the slow-query log, and any observer added later (a test's)."""

    @classmethod
    async def open_api(
        cls,
        settings: Settings,
        engine: AsyncEngine,
        jwt_auth: BearerTokenAuth,
        query_observers: list[StatementObserver],
        record_cache_outcome: CacheOutcome = ignore_outcome,
    ) -> ApiServices:
        redis_url = _redis_url(settings)
        # Nothing here waits for PostgreSQL or Redis: a worker started while either is down must come up and answer
        # 503 until they are back (a worker that exits at start-up is respawned, and Granian stops on a crash loop).
        asyncpg_pool = await create_asyncpg_pool(settings, "roi", query_observers, min_size=0)
        redis = create_cache_redis(redis_url, settings.redis_max_connections, settings.redis_timeout_s)
        batched_reads = PipelinedGet(redis_url, settings.redis_timeout_s)
        cache = Cache(redis, settings.redis_namespace, record=record_cache_outcome, fast_get=batched_reads)
        events = _events(settings, redis)
        queue = create_queue(redis_url, settings.redis_namespace)
        cursors = CursorSigner(settings.secret_key)
        storage = upload_storage(settings)
        uploads = UploadService(
            UploadRepository(asyncpg_pool, upload_lease_s(settings), settings.upload_expiry_s),
            storage,
            events,
            queue,
            max_size=settings.tus_max_size,
            idle_timeout_s=settings.upload_idle_timeout_s,
            cursors=cursors,
        )
        throttle = LoginThrottle(
            redis,
            settings.redis_namespace,
            settings.login_max_failures_per_account,
            settings.login_max_failures_per_address,
            settings.login_failure_window_s,
        )
        revocations = RevocationFeed(asyncpg_pool, jwt_auth.revoked, settings.token_revocation_poll_s)
        await revocations.start()
        count_folder = CountFolder(asyncpg_pool)
        count_folder.start()
        return cls(
            settings=settings,
            engine=engine,
            redis=redis,
            cache=cache,
            events=events,
            queue=queue,
            storage=storage,
            jwt_auth=jwt_auth,
            tokens=TokenIssuer(jwt_auth),
            revocations=revocations,
            count_folder=count_folder,
            asyncpg_pool=asyncpg_pool,
            batched_reads=batched_reads,
            cursors=cursors,
            workflows=WorkflowReader(asyncpg_pool, cache, cursors),
            runs=RunQueue(asyncpg_pool, cache, events, queue),
            agents=AgentReader(asyncpg_pool, cache),
            uploads=uploads,
            login_throttle=throttle,
            query_observers=query_observers,
        )

    async def close(self) -> None:
        """Each client closed within a bound: a shutdown never waits for ever on one that does not answer."""
        await close_within("the revocation feed", self.revocations.stop())
        await close_within("the count folder", self.count_folder.stop())
        await super().close()
        self.batched_reads.close()
        # close() waits for every connection to come back: one held by a request that never ends is cut instead.
        if not await close_within("the asyncpg pool", self.asyncpg_pool.close()):
            self.asyncpg_pool.terminate()


def provide_services(state: State) -> ApiServices:
    """The API process's container, for handlers and hooks that need it (the `services` lifespan opens it)."""
    services: ApiServices = state.services
    return services


def upload_lease_s(settings: Settings) -> float:
    """An appending request renews its lease whenever bytes arrive and gives up after the idle timeout: a lease
    outliving that timeout can only lapse when its holder died."""
    return settings.upload_idle_timeout_s + 10.0


def _redis_url(settings: Settings) -> str:
    assert settings.redis_url, "REDIS_URL is set before anything connects"
    return settings.redis_url


def _events(settings: Settings, redis: Redis) -> EventBus:
    return EventBus(redis, settings.redis_namespace, settings.event_history_size, settings.event_history_age_s)
