"""Helpers the integration tests share."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from db.statements import ExecutedStatement
from testkit.factories import RegistrationFactory


class Account:
    """A registered user and the headers that authenticate as them."""

    def __init__(self, user_id: str, email: str, token: str) -> None:
        self.id = user_id
        self.email = email
        self.headers = {"Authorization": f"Bearer {token}"}


async def sign_up(client: AsyncTestClient) -> Account:
    registration = RegistrationFactory.build()
    body = {"email": registration.email, "password": registration.password, "name": registration.name}
    created = await client.post("/api/auth/register", json=body)
    assert created.status_code == 201, created.text
    login = await client.post("/api/auth/login", json={"email": registration.email, "password": registration.password})
    assert login.status_code == 200, login.text
    return Account(created.json()["id"], registration.email, login.json()["access_token"])


def served_by_request(statement: ExecutedStatement) -> bool:
    """False for what every API process runs in the background (the revocation feed's poll every 0.25 s, the counts'
    fold every second and its vacuum): it may land inside any request's window without being part of it."""
    return not any(part in statement.sql for part in ("token_revocations", "roi_fold_workflow_counts", "VACUUM"))
