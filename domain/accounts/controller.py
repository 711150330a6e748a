"""HTTP for accounts: register, login, me, logout, password change."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from domain.accounts.revocation import RevocationFeed
from domain.accounts.schemas import AccessToken, Credentials, CurrentUser, PasswordChange, Registration, UserOut
from domain.accounts.security import (
    BEARER_REQUIREMENT,
    Caller,
    TokenIssuer,
    admin_ui_cookie,
    cleared_admin_ui_cookie,
    provide_current_user,
)
from domain.accounts.service import UserService
from domain.accounts.throttle import LoginThrottle
from domain.errors import InvalidInput, NotFound, Unauthorized
from domain.http import strict_body
from infra.openapi import errors, no_content


async def provide_user_service(db_session: AsyncSession) -> AsyncGenerator[UserService, None]:
    async with UserService.new(session=db_session) as service:
        yield service


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, email=user.email, name=user.name, is_admin=user.is_admin, created_at=user.created_at)


class AccountController(Controller):
    tags = ["accounts"]
    dependencies = {
        "users": Provide(provide_user_service),
        "user": Provide(provide_current_user, sync_to_thread=False),
    }

    @post(
        "/api/auth/register",
        status_code=HTTP_201_CREATED,
        before_request=strict_body(Registration),
        summary="Create an account",
        responses=errors(400, 409, 413),
    )
    async def register(self, data: Registration, users: UserService) -> UserOut:
        return user_out(await users.register(data.email, data.password, data.name))

    @post(
        "/api/auth/login",
        status_code=HTTP_200_OK,
        before_request=strict_body(Credentials),
        summary="Exchange credentials for a bearer token",
        responses=errors(401, 429),
    )
    async def login(
        self,
        data: Credentials,
        users: UserService,
        login_throttle: LoginThrottle,
        tokens: TokenIssuer,
        request: Request[Any, Any, Any],
    ) -> Response[AccessToken]:
        """The token in the body; an admin also gets it as a cookie scoped to the queue UI, for the browser.

        Failed attempts are counted per account and per client address (`LoginThrottle`): past the limit, 429.
        """
        throttle = login_throttle
        address = request.client.host if request.client else "unknown"
        await throttle.check(data.email, address)
        try:
            user = await users.authenticate(data.email, data.password)
        except Unauthorized:
            await throttle.failed(data.email, address)
            raise
        await throttle.succeeded(data.email)
        token = tokens.issue(user.id, user.is_admin, user.token_generation)
        expires_in = tokens.lifetime_s
        cookies = [admin_ui_cookie(request, token, expires_in)] if user.is_admin else []
        return Response(AccessToken(access_token=token, expires_in=expires_in), cookies=cookies)

    @get("/api/me", summary="The current user", responses=errors(401, 404), security=[BEARER_REQUIREMENT])
    async def me(self, user: CurrentUser, users: UserService) -> UserOut:
        account = await users.get_user(user.id)
        if account is None:
            raise NotFound("this account no longer exists")
        return user_out(account)

    @post(
        "/api/auth/logout",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke the token of this request, everywhere",
        responses=no_content("Signed out: this token is refused from now on") | errors(401),
        security=[BEARER_REQUIREMENT],
    )
    async def logout(
        self, user: CurrentUser, users: UserService, revocations: RevocationFeed, tokens: TokenIssuer, request: Caller
    ) -> Response[None]:
        """Every API process refuses the token within a fraction of a second (its open WebSockets are closed with
        4401); the queue UI's cookie is cleared too."""
        if user.token_id is None:
            revoked = await users.revoke_all(user.id, tokens.lifetime_s)
            revocations.older_than(user.id, revoked.generation or 0, revoked.expires_at)
        else:
            await revocations.revoke_token(user, request.auth.exp)
        return Response(None, status_code=HTTP_204_NO_CONTENT, cookies=[cleared_admin_ui_cookie(request)])

    @post(
        "/api/auth/password",
        status_code=HTTP_204_NO_CONTENT,
        before_request=strict_body(PasswordChange),
        summary="Change the password; every token issued before stops working",
        responses=no_content("Changed: sign in again with the new password") | errors(400, 401, 404, 429),
        security=[BEARER_REQUIREMENT],
    )
    async def change_password(
        self,
        data: PasswordChange,
        user: CurrentUser,
        users: UserService,
        login_throttle: LoginThrottle,
        revocations: RevocationFeed,
        tokens: TokenIssuer,
        request: Caller,
    ) -> Response[None]:
        """This token too stops working: sign in again with the new password. A wrong `current_password` counts as
        a failed login of the account (the same limit, then 429), so a stolen token cannot guess the password
        faster than the login form could."""
        account = await users.get_user(user.id)
        if account is None:
            raise NotFound("this account no longer exists")
        address = request.client.host if request.client else "unknown"
        await login_throttle.check(account.email, address)
        try:
            revoked = await users.change_password(account, data.current_password, data.new_password, tokens.lifetime_s)
        except InvalidInput:
            await login_throttle.failed(account.email, address)
            raise
        await login_throttle.succeeded(account.email)
        revocations.older_than(user.id, revoked.generation or 0, revoked.expires_at)
        return Response(None, status_code=HTTP_204_NO_CONTENT, cookies=[cleared_admin_ui_cookie(request)])
