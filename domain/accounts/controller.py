"""HTTP for accounts: register, login, me."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from domain.accounts.schemas import AccessToken, Credentials, CurrentUser, Registration, UserOut
from domain.accounts.security import TokenIssuer, admin_ui_cookie, provide_current_user
from domain.accounts.service import UserService
from domain.accounts.throttle import LoginThrottle
from domain.errors import NotFound, Unauthorized
from domain.http import strict_body
from infra.openapi import errors


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
        token = tokens.issue(user.id, user.is_admin)
        expires_in = tokens.lifetime_s
        cookies = [admin_ui_cookie(token, expires_in)] if user.is_admin else []
        return Response(AccessToken(access_token=token, expires_in=expires_in), cookies=cookies)

    @get("/api/me", summary="The current user", responses=errors(401, 404))
    async def me(self, user: CurrentUser, users: UserService) -> UserOut:
        account = await users.get_user(user.id)
        if account is None:
            raise NotFound("this account no longer exists")
        return user_out(account)
