"""Bearer-token authentication: JWTs signed with SECRET_KEY, verified without a database round trip."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.security.jwt import JWTCookieAuth, Token

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


ADMIN_UI_PATH = "/saq"
ADMIN_UI_COOKIE = "roi_admin_token"


def build_jwt_auth(secret_key: str, token_ttl_s: int) -> JWTCookieAuth[CurrentUser, Token]:
    """Bearer tokens everywhere; the admin UI (a browser page) may also send the token as a cookie, which is
    scoped to that path, so no cookie ever authenticates an /api request."""
    return JWTCookieAuth[CurrentUser, Token](
        token_secret=secret_key,
        retrieve_user_handler=user_from_token,
        default_token_expiration=datetime.timedelta(seconds=token_ttl_s),
        exclude=PUBLIC_PATHS,
        key=ADMIN_UI_COOKIE,
        path=ADMIN_UI_PATH,
        samesite="strict",
    )


def admin_ui_cookie(token: str, token_ttl_s: int) -> Cookie:
    return Cookie(
        key=ADMIN_UI_COOKIE,
        value=f"Bearer {token}",
        path=ADMIN_UI_PATH,
        httponly=True,
        samesite="strict",
        max_age=token_ttl_s,
    )


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for operator surfaces: 401 without a user, 403 for a user who is not an admin."""
    user = connection.scope.get("user")
    if not isinstance(user, CurrentUser):
        raise NotAuthorizedException("sign in as an admin")
    if not user.is_admin:
        raise PermissionDeniedException("admins only")
