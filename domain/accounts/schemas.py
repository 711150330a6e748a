"""The accounts contract: what register, login and /api/me take and give."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec

from domain.text import NO_NUL

Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3, max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$", description="an email address"
    ),
]
Password = Annotated[str, msgspec.Meta(min_length=8, max_length=256, description="at least 8 characters")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]


class Registration(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


class Credentials(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=1, max_length=320, pattern=NO_NUL)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class AccessToken(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: Literal["bearer"] = "bearer"


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    is_admin: bool
    created_at: datetime.datetime


class CurrentUser(msgspec.Struct, frozen=True):
    """Who is calling, read from the verified token alone so that hot paths make no query for it."""

    id: uuid.UUID
    is_admin: bool = False
    token_id: str | None = None
    """The token's `jti`, which logout revokes (tokens issued before revocations existed have none)."""
    token_generation: int = 0
    """The user's token generation when the token was issued: a password change refuses every lower one."""


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    current_password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    new_password: Password
