"""Who is connecting (the token) and what they may subscribe to (their own workflows, uploads and user channel)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import asyncpg
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import JWTCookieAuth, Token
from litestar.types import Scope

from domain.accounts.revocation import RevokedTokens
from domain.accounts.schemas import CurrentUser
from domain.accounts.security import user_from_token

OWNER_QUERIES: dict[str, str] = {
    "workflow": "SELECT owner_id FROM roi_workflows WHERE id = $1",
    "upload": "SELECT owner_id FROM uploads WHERE id = $1",
}
"""The owner of each kind of resource channel; a kind whose table does not exist yet (uploads) forbids everything."""

USER_KIND = "user"


class InvalidChannel(ValueError):
    """Not a channel name: `workflow:<uuid>`, `upload:<uuid>` or `user:<uuid>`."""


@dataclass(frozen=True)
class Identity:
    user: CurrentUser
    expires_at: float
    """When the token stops being valid (Unix time): the connection is closed then."""


def token_of(scope: Scope) -> str | None:
    """The bearer token of an upgrade request: the `Authorization` header, else the `token` query parameter."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return tokens[0] if tokens else None


class TokenVerifier:
    """Verifies tokens exactly as the HTTP API does: same secret, algorithm, expiry check and revocations."""

    def __init__(self, jwt_auth: JWTCookieAuth[CurrentUser, Token], revoked: RevokedTokens) -> None:
        self.jwt_auth = jwt_auth
        self.revoked = revoked

    async def identify(self, scope: Scope) -> Identity | None:
        encoded = token_of(scope)
        if not encoded:
            return None
        try:
            token = self.jwt_auth.token_cls.decode(
                encoded_token=encoded, secret=self.jwt_auth.token_secret, algorithm=self.jwt_auth.algorithm
            )
        except NotAuthorizedException:
            return None
        user = await user_from_token(token, ASGIConnection[Any, Any, Any, Any](scope))
        if user is None or self.revoked.refuses(user):
            return None
        return Identity(user, token.exp.timestamp())


def canonical_channel(name: str) -> str:
    """`kind:<uuid>` with the id in its canonical form, as publishers spell it; raises InvalidChannel."""
    kind, _, ident = name.partition(":")
    if kind not in OWNER_QUERIES and kind != USER_KIND:
        raise InvalidChannel(f"unknown channel kind {kind!r}")
    try:
        return f"{kind}:{uuid.UUID(ident)}"
    except ValueError:
        raise InvalidChannel(f"{kind} channels are named {kind}:<uuid>") from None


class ChannelAuthorizer:
    """One indexed lookup on the read pool per subscription: is the user the owner of what the channel shows?"""

    def __init__(self, asyncpg_pool: asyncpg.Pool) -> None:
        self.asyncpg_pool = asyncpg_pool

    async def allows(self, user: CurrentUser, channel: str) -> bool:
        """`channel` must be canonical (see `canonical_channel`)."""
        kind, _, ident = channel.partition(":")
        resource_id = uuid.UUID(ident)
        if kind == USER_KIND:
            return resource_id == user.id
        try:
            owner = await self.asyncpg_pool.fetchval(OWNER_QUERIES[kind], resource_id)
        except asyncpg.UndefinedTableError:
            return False
        return owner is not None and owner == user.id
