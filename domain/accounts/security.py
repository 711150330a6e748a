"""Bearer-token authentication: JWTs signed with SECRET_KEY, verified without a database round trip."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.security.jwt import JWTAuth, Token

from domain.accounts.schemas import CurrentUser

PUBLIC_PATHS = [
    "^/health$",
    "^/ready$",
    "^/metrics",
    "^/schema",
    "^/api/auth/",
]


async def user_from_token(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> CurrentUser | None:
    try:
        return CurrentUser(id=uuid.UUID(token.sub), is_admin=bool(token.extras.get("adm", False)))
    except ValueError:
        return None


def build_jwt_auth(secret_key: str, token_ttl_s: int) -> JWTAuth[CurrentUser, Token]:
    return JWTAuth[CurrentUser, Token](
        token_secret=secret_key,
        retrieve_user_handler=user_from_token,
        default_token_expiration=datetime.timedelta(seconds=token_ttl_s),
        exclude=PUBLIC_PATHS,
    )
