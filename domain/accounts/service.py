"""Account rules: unique emails, hashed passwords, credential checks."""

from __future__ import annotations

import uuid

from advanced_alchemy.exceptions import IntegrityError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService

from db.models import User
from domain.accounts.passwords import hash_password, verify_password
from domain.errors import ConflictError, Unauthorized


def normalise_email(email: str) -> str:
    return email.strip().lower()


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo

    async def register(self, email: str, password: str, name: str, *, is_admin: bool = False) -> User:
        """Create an account; `ConflictError` when the email is taken (checked by the unique index, race-free)."""
        user = User(
            email=normalise_email(email),
            name=name.strip(),
            password_hash=await hash_password(password),
            is_admin=is_admin,
        )
        try:
            return await self.create(user, auto_commit=True)
        except IntegrityError as error:
            raise ConflictError("an account with this email already exists") from error

    async def authenticate(self, email: str, password: str) -> User:
        user = await self.get_one_or_none(email=normalise_email(email))
        if not await verify_password(user.password_hash if user else None, password) or user is None:
            raise Unauthorized("wrong email or password")
        return user

    async def get_user(self, user_id: uuid.UUID) -> User | None:
        return await self.get_one_or_none(id=user_id)
