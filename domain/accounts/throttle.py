"""Login brute force, slowed down: failed logins counted in Redis per account and per client address.

After `max_failures_per_account` failures for one email, or `max_failures_per_address` from one address, within
`window_s`, further logins are answered `429` with `Retry-After` until the window ends, before any password is
checked (so a locked account costs the server nothing). Counting failures only keeps a user who logs in often
unaffected. Redis unreachable: logins go on unthrottled (logged); being able to log in matters more.
Emails are hashed in the keys: Redis never holds who tried to log in.
"""

from __future__ import annotations

import hashlib
import logging

from redis.asyncio import Redis

from domain.errors import DomainError
from infra.redis import REDIS_FAILURES

logger = logging.getLogger("roi.accounts")

_COUNT_FAILURE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class TooManyAttempts(DomainError):
    status_code = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")
        self.headers = {"Retry-After": str(retry_after_s)}


class LoginThrottle:
    def __init__(
        self,
        redis: Redis,
        namespace: str,
        max_failures_per_account: int,
        max_failures_per_address: int,
        window_s: int,
    ) -> None:
        self.redis = redis
        self.namespace = namespace
        self.limits = (max_failures_per_account, max_failures_per_address)
        self.window_s = window_s
        self._count_failure = redis.register_script(_COUNT_FAILURE)

    def _keys(self, email: str, address: str) -> tuple[str, str]:
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        return f"{self.namespace}:login:account:{account}", f"{self.namespace}:login:address:{address}"

    async def check(self, email: str, address: str) -> None:
        """Raises TooManyAttempts while either counter is at its limit."""
        keys = self._keys(email, address)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                    pipe.ttl(key)
                account_count, account_ttl, address_count, address_ttl = await pipe.execute()
        except REDIS_FAILURES:
            logger.warning("login throttle unavailable: Redis does not answer")
            return
        for count, ttl, limit in (
            (account_count, account_ttl, self.limits[0]),
            (address_count, address_ttl, self.limits[1]),
        ):
            if count is not None and int(count) >= limit:
                raise TooManyAttempts(max(int(ttl), 1))

    async def failed(self, email: str, address: str) -> None:
        try:
            for key in self._keys(email, address):
                await self._count_failure(keys=[key], args=[self.window_s])
        except REDIS_FAILURES:
            logger.warning("failed login not counted: Redis does not answer")

    async def succeeded(self, email: str) -> None:
        """A correct password clears the account's count (not the address's: one account proves nothing of others)."""
        try:
            await self.redis.delete(self._keys(email, "")[0])
        except REDIS_FAILURES:
            logger.warning("login count not cleared: Redis does not answer")
