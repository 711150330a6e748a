"""Account rules: unique emails, hashed passwords, credential checks, password changes."""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.exceptions import IntegrityError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select

from db.models import TokenRevocation, User
from domain.accounts.passwords import hash_password, verify_password
from domain.errors import ConflictError, InvalidInput, Unauthorized


def check_email(email: str) -> None:
    """Syntax only (RFC 5322 as `email-validator` reads it): no DNS look-up, so registering works offline."""
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidInput(f"email: {error}") from None


def normalise_email(email: str) -> str:
    return email.strip().lower()


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo

    async def register(self, email: str, password: str, name: str, *, is_admin: bool = False) -> User:
        check_email(email)
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

    async def change_password(
        self, user: User, current_password: str, new_password: str, tokens_live_s: int
    ) -> TokenRevocation:
        """Checks `current_password` (`InvalidInput` if wrong), stores the new hash and raises the user's token
        generation, with the revocation row every process reads, in one transaction: every token issued before
        stops working. The password is checked against the locked row, so of two concurrent changes with the same
        current password the second is refused, and no token issued in between outlives it."""
        new_password_hash = await hash_password(new_password)
        locked = await self._locked(user.id)
        if not await verify_password(locked.password_hash, current_password):
            raise InvalidInput("current_password: wrong password")
        locked.password_hash = new_password_hash
        return await self._raise_generation(locked, tokens_live_s)

    async def revoke_all(self, user_id: uuid.UUID, tokens_live_s: int) -> TokenRevocation:
        """Every token of the user: logout with a token that has no id of its own (issued before tokens had one)."""
        return await self._raise_generation(await self._locked(user_id), tokens_live_s)

    async def _locked(self, user_id: uuid.UUID) -> User:
        """The user's row, locked and read afresh: the session may hold it already (the caller's `request.user`),
        and without `populate_existing` the identity map would hand back that copy with its old generation."""
        statement = select(User).where(User.id == user_id).with_for_update().execution_options(populate_existing=True)
        locked: User = (await self.repository.session.execute(statement)).scalar_one()
        return locked

    async def _raise_generation(self, locked: User, tokens_live_s: int) -> TokenRevocation:
        session = self.repository.session
        locked.token_generation += 1
        revocation = TokenRevocation(
            user_id=locked.id,
            generation=locked.token_generation,
            expires_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=tokens_live_s),
        )
        session.add(revocation)
        await session.commit()
        return revocation
