"""Revoked tokens: PostgreSQL holds them, every API process keeps a copy in memory and refreshes it several times a
second, so the hot path checks a token with two dictionary look-ups and no round trip.

A revocation is a row of `token_revocations`: one token (`jti`, at logout) or all of a user's tokens issued before a
generation (at a password change). A process reads every unexpired row when it starts, then, every `poll_s`, the rows
created since its last successful look (minus a margin for transactions that committed late), so a revocation made
anywhere is seen everywhere within `poll_s` plus one round trip; every minute it reads all unexpired rows again (a
transaction that committed later than the margin). Nothing of it lives in Redis: a Redis restart loses no
revocation. A process started while PostgreSQL does not answer refuses every token with a 503 until it has read them
once; later, while PostgreSQL does not answer, it keeps the copy it has (no revocation can be written then) and, once
it answers again, reads everything it missed.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid
from collections.abc import Callable, Iterable

import asyncpg

from domain.accounts.schemas import CurrentUser
from infra.closing import cancel_and_wait, raise_if_cancelled

logger = logging.getLogger("roi.accounts")

LATE_COMMIT_MARGIN_S = 5.0
"""Rows are found by their creation time; a row created this long before the previous look, but committed after
it, is still read (the transactions that write them last milliseconds); the full read every `FORGET_EVERY_S` finds
any later one."""
FORGET_EVERY_S = 60.0

_UNEXPIRED = """
SELECT user_id, jti, generation, expires_at, now() AS looked_at
FROM (SELECT 1) AS one LEFT JOIN token_revocations ON expires_at > now()
"""
_CREATED_SINCE = """
SELECT user_id, jti, generation, expires_at, now() AS looked_at
FROM (SELECT 1) AS one LEFT JOIN token_revocations ON created_at > $1
"""
_REVOKE_TOKEN = "INSERT INTO token_revocations (user_id, jti, expires_at) VALUES ($1, $2, $3)"
_FORGET_EXPIRED = "DELETE FROM token_revocations WHERE expires_at < now()"


class RevokedTokens:
    """The process's copy: revoked token ids and, per user, the lowest token generation still valid."""

    __slots__ = ("_floors", "_jtis", "_listeners", "loaded")

    def __init__(self) -> None:
        self.loaded = False
        """Whether every unexpired revocation has been read once: until then no token can be trusted."""
        self._jtis: dict[str, float] = {}
        self._floors: dict[uuid.UUID, tuple[int, float]] = {}
        self._listeners: list[Callable[[], None]] = []

    def refuses(self, user: CurrentUser) -> bool:
        """Whether the token `user` was read from has been revoked (a few hundred nanoseconds)."""
        if user.token_id is not None and user.token_id in self._jtis:
            return True
        floor = self._floors.get(user.id)
        return floor is not None and user.token_generation < floor[0]

    def on_revocation(self, listener: Callable[[], None]) -> None:
        """`listener` is called after revocations were added (open WebSockets check their tokens)."""
        self._listeners.append(listener)

    def add(self, user_id: uuid.UUID, jti: str | None, generation: int | None, expires_at: float) -> bool:
        """Whether this is news (the same row is read more than once)."""
        if jti is not None:
            if jti in self._jtis:
                return False
            self._jtis[jti] = expires_at
            return True
        if generation is None:
            return False
        floor = self._floors.get(user_id)
        if floor is not None and floor[0] >= generation:
            return False
        self._floors[user_id] = (generation, max(expires_at, floor[1] if floor else 0.0))
        return True

    def added(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener's fault must not stop revocations reaching the others
                logger.exception("a revocation listener failed")

    def forget_expired(self, now: float) -> None:
        """The tokens these entries refuse have expired anyway."""
        self._jtis = {jti: until for jti, until in self._jtis.items() if until > now}
        self._floors = {user: floor for user, floor in self._floors.items() if floor[1] > now}


class RevocationFeed:
    """Keeps a `RevokedTokens` up to date from PostgreSQL, and writes logouts to it."""

    def __init__(
        self, pool: asyncpg.Pool, revoked: RevokedTokens, poll_s: float, *, read_all_every_s: float = FORGET_EVERY_S
    ) -> None:
        self.pool = pool
        self.revoked = revoked
        self.poll_s = poll_s
        self.read_all_every_s = read_all_every_s
        self._looked_at: datetime.datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._forgot_at = time.monotonic()

    async def start(self) -> None:
        """Reads every unexpired revocation before the process serves anything, then polls in the background."""
        try:
            await self._read_all()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            logger.warning("revocations not read at start (%s); retrying in the background", error)
        self._task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def revoke_token(self, user: CurrentUser, expires_at: datetime.datetime) -> None:
        """Logout: this token, everywhere. Applied here at once, in other processes at their next look."""
        if user.token_id is None:
            raise ValueError("a token without an id is revoked by raising the user's generation")
        await self.pool.execute(_REVOKE_TOKEN, user.id, user.token_id, expires_at)
        if self.revoked.add(user.id, user.token_id, None, expires_at.timestamp()):
            self.revoked.added()

    def older_than(self, user_id: uuid.UUID, generation: int, expires_at: datetime.datetime) -> None:
        """Apply here at once a password change committed by this process."""
        if self.revoked.add(user_id, None, generation, expires_at.timestamp()):
            self.revoked.added()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.debug("revocations not refreshed: %s", error)
            except Exception:
                logger.exception("revocations not refreshed")
            raise_if_cancelled()

    async def refresh(self) -> None:
        if self._looked_at is None:
            await self._read_all()
            return
        if time.monotonic() - self._forgot_at > self.read_all_every_s:
            self._forgot_at = time.monotonic()
            self.revoked.forget_expired(time.time())
            await self.pool.execute(_FORGET_EXPIRED)
            await self._read_all()
            return
        since = self._looked_at - datetime.timedelta(seconds=LATE_COMMIT_MARGIN_S)
        self._apply(await self.pool.fetch(_CREATED_SINCE, since))

    async def read_if_unread(self) -> None:
        """Readiness: a process whose start found PostgreSQL down is ready once it has read the revocations, not one
        poll later."""
        if not self.revoked.loaded:
            await self._read_all()

    async def _read_all(self) -> None:
        self._apply(await self.pool.fetch(_UNEXPIRED))
        self.revoked.loaded = True

    def _apply(self, rows: Iterable[asyncpg.Record]) -> None:
        news = False
        for row in rows:
            self._looked_at = row["looked_at"]
            if row["user_id"] is not None:
                news |= self.revoked.add(row["user_id"], row["jti"], row["generation"], row["expires_at"].timestamp())
        if news:
            self.revoked.added()
