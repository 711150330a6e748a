"""Bearer-token authentication: JWTs signed with SECRET_KEY, verified without a database round trip."""

from __future__ import annotations

import datetime
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, State
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException, ServiceUnavailableException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import AuthenticationResult
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.spec import Components, SecurityScheme
from litestar.security.jwt import JWTCookieAuth, Token
from litestar.security.jwt.middleware import JWTCookieAuthenticationMiddleware
from litestar.types import Receive, Scope, Send

from domain.accounts.revocation import RevokedTokens
from domain.accounts.schemas import CurrentUser

PUBLIC_PATHS = [
    "^/health$",
    "^/ready$",
    "^/metrics",
    "^/schema",
    "^/api/auth/(register|login)$",
]


VERIFIED_TOKENS_CACHED = 8192
TOKEN_REVOKED = "this token was revoked (signed out, or the password changed): sign in again"
REVOCATIONS_UNREAD = "starting: the revoked tokens are not read yet (the database does not answer); retry shortly"
RETRY_AFTER_S = 2
ADMIN_UI_PATH = "/saq"
ADMIN_UI_COOKIE = "roi_admin_token"


class RememberingJWTMiddleware(JWTCookieAuthenticationMiddleware):
    """Remembers who each verified token names, until the token expires.

    Verifying an HS256 token costs ~300 µs of CPU in PyJWT and Litestar (key checks, claim conversion), on every
    request; a token's verdict never changes, so a verified one is kept (bounded, per process) with its expiry,
    which is still checked on every use.
    """

    __slots__ = ("_verified", "revoked")

    def __init__(self, *args: Any, revoked: RevokedTokens, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.revoked = revoked
        self._verified: OrderedDict[str, tuple[AuthenticationResult, float]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A CORS preflight carries no credentials by design: it passes (only when CORS is configured does anything
        answer it); every other request, OPTIONS included, authenticates."""
        if scope["type"] == ScopeType.HTTP and scope["method"] == "OPTIONS" and _is_preflight(scope):
            await self.app(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        """The bearer header anywhere; the admin UI's cookie only under its path, so it never opens /api."""
        encoded_token = connection.headers.get(self.auth_header, "").partition(" ")[-1]
        if not encoded_token and connection.scope["path"].startswith(ADMIN_UI_PATH):
            encoded_token = connection.cookies.get(self.auth_cookie_key, "").split(" ")[-1]
        if not encoded_token:
            raise NotAuthorizedException("No JWT token found in request header")
        return await self.authenticate_token(encoded_token, connection)

    async def authenticate_token(
        self, encoded_token: str, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        """A remembered verdict still meets the revocations on every use, and none passes before they were read."""
        if not self.revoked.loaded:
            raise ServiceUnavailableException(REVOCATIONS_UNREAD, headers={"Retry-After": str(RETRY_AFTER_S)})
        remembered = self._verified.get(encoded_token)
        if remembered is not None and remembered[1] > time.time():
            result = remembered[0]
        else:
            result = await super().authenticate_token(encoded_token, connection)
            self._verified[encoded_token] = (result, result.auth.exp.timestamp())
            if len(self._verified) > VERIFIED_TOKENS_CACHED:
                self._verified.popitem(last=False)
        if self.revoked.refuses(result.user):
            raise NotAuthorizedException(TOKEN_REVOKED)
        return result


def _is_preflight(scope: Scope) -> bool:
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


async def user_from_token(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> CurrentUser | None:
    generation = token.extras.get("gen", 0)
    if not isinstance(generation, int) or not isinstance(token.jti, str | None):
        return None
    try:
        return CurrentUser(
            id=uuid.UUID(token.sub),
            is_admin=bool(token.extras.get("adm", False)),
            token_id=token.jti,
            token_generation=generation,
        )
    except ValueError:
        return None


BEARER_REQUIREMENT: dict[str, list[str]] = {"BearerToken": []}
"""The OpenAPI security requirement of every route that needs a token; public routes name none."""


@dataclass
class BearerTokenAuth(JWTCookieAuth[CurrentUser, Token]):
    """The JWT cookie auth as the API documents it: an HTTP bearer scheme (the cookie serves the queue UI alone,
    which is not in the document), required by the routes that declare `BEARER_REQUIREMENT`, not globally; its
    middleware refuses the tokens in `revoked`."""

    revoked: RevokedTokens = field(default_factory=RevokedTokens)

    @property
    def middleware(self) -> DefineMiddleware:
        defined = super().middleware
        defined.kwargs["revoked"] = self.revoked
        return defined

    @property
    def openapi_components(self) -> Components:
        scheme = SecurityScheme(type="http", scheme="bearer", bearer_format="JWT", description=self.description)
        return Components(security_schemes={self.openapi_security_scheme_name: scheme})

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config = super().on_app_init(app_config)
        if app_config.openapi_config is not None:
            app_config.openapi_config.security = None
        return app_config


def build_jwt_auth(secret_key: str, token_ttl_s: int) -> BearerTokenAuth:
    """Bearer tokens everywhere; the admin UI (a browser page) may also send the token as a cookie, which is
    scoped to that path, so no cookie ever authenticates an /api request."""
    return BearerTokenAuth(
        token_secret=secret_key,
        retrieve_user_handler=user_from_token,
        default_token_expiration=datetime.timedelta(seconds=token_ttl_s),
        exclude=PUBLIC_PATHS,
        description="A bearer token from POST /api/auth/login, in the Authorization header",
        exclude_http_methods=[],  # Litestar skips HEAD and OPTIONS by default; tus HEADs must be the owner's too
        authentication_middleware_class=RememberingJWTMiddleware,
        key=ADMIN_UI_COOKIE,
        path=ADMIN_UI_PATH,
        samesite="strict",
    )


class TokenIssuer:
    """Makes the bearer tokens the API hands out at login, signed as the middleware verifies them."""

    def __init__(self, auth: BearerTokenAuth) -> None:
        self.auth = auth
        self.lifetime_s = int(auth.default_token_expiration.total_seconds())

    def issue(self, user_id: uuid.UUID, is_admin: bool, generation: int) -> str:
        """Each token has its own id (`jti`), which logout revokes, and the user's token generation."""
        return self.auth.create_token(
            identifier=str(user_id),
            token_unique_jwt_id=uuid.uuid4().hex,
            token_extras={"adm": is_admin, "gen": generation},
        )


def admin_ui_cookie(connection: ASGIConnection[Any, Any, Any, Any], token: str, token_ttl_s: int) -> Cookie:
    """The queue UI's cookie: HttpOnly, SameSite=Strict, scoped to the UI, and Secure when the request came over
    HTTPS (browsers drop a Secure cookie set over plain HTTP, other than on localhost)."""
    return Cookie(
        key=ADMIN_UI_COOKIE,
        value=f"Bearer {token}",
        path=ADMIN_UI_PATH,
        httponly=True,
        samesite="strict",
        secure=connection.url.scheme == "https",
        max_age=token_ttl_s,
    )


def cleared_admin_ui_cookie(connection: ASGIConnection[Any, Any, Any, Any]) -> Cookie:
    """The same cookie, emptied and expired: a browser drops it only if path and flags match the one it holds."""
    cleared = admin_ui_cookie(connection, "", 0)
    cleared.value = ""
    return cleared


async def admin_in_cookie(
    connection: ASGIConnection[Any, Any, Any, Any], auth: BearerTokenAuth
) -> tuple[CurrentUser, datetime.datetime] | None:
    """The admin whose valid, unrevoked token the queue UI's cookie holds, and when it expires; None otherwise. For the
    UI's own pages that authentication does not guard (its sign-in form, its sign-out)."""
    encoded = connection.cookies.get(ADMIN_UI_COOKIE, "").split(" ")[-1]
    if not encoded or not auth.revoked.loaded:
        return None
    try:
        token = auth.token_cls.decode(encoded_token=encoded, secret=auth.token_secret, algorithm=auth.algorithm)
    except NotAuthorizedException:
        return None
    user = await user_from_token(token, connection)
    if user is None or not user.is_admin or auth.revoked.refuses(user):
        return None
    return user, token.exp


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for operator surfaces: 401 without a user, 403 for a user who is not an admin."""
    user = connection.scope.get("user")
    if not isinstance(user, CurrentUser):
        raise NotAuthorizedException("sign in as an admin")
    if not user.is_admin:
        raise PermissionDeniedException("admins only")


Caller = Request[CurrentUser, Any, State]
"""A request from an authenticated user: `request.user` is who is calling (read from the token, no query)."""


def provide_current_user(request: Request[CurrentUser, Any, Any]) -> CurrentUser:
    return request.user
