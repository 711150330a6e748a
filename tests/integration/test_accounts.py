"""Accounts over HTTP: register, login, me, and the token guard on every private endpoint."""

from __future__ import annotations

import datetime

import jwt
import pytest
from litestar.testing import AsyncTestClient

from testkit.factories import RegistrationFactory
from tests.integration.support import Account


async def test_register_login_me(client: AsyncTestClient) -> None:
    registration = RegistrationFactory.build(email="Ada@Example.COM")
    created = await client.post(
        "/api/auth/register",
        json={"email": registration.email, "password": registration.password, "name": "Ada"},
    )
    assert created.status_code == 201
    user = created.json()
    assert user["email"] == "ada@example.com"
    assert user["is_admin"] is False
    assert "password" not in created.text
    assert registration.password not in created.text

    login = await client.post("/api/auth/login", json={"email": "ADA@example.com", "password": registration.password})
    assert login.status_code == 200
    token = login.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] > 0

    me = await client.get("/api/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.json() == user


async def test_email_taken_is_409(client: AsyncTestClient, alice: Account) -> None:
    again = await client.post(
        "/api/auth/register", json={"email": alice.email.upper(), "password": "long-enough", "name": "Other"}
    )
    assert again.status_code == 409
    assert "email" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@b.co", "password": "short", "name": "A"}, "password"),
        ({"email": "not-an-email", "password": "long-enough", "name": "A"}, "email"),
        ({"email": "two..dots@example.com", "password": "long-enough", "name": "A"}, "email"),
        ({"email": "a@-hyphen.example.com", "password": "long-enough", "name": "A"}, "email"),
        ({"email": "a@b.co", "password": "long-enough", "name": ""}, "name"),
        ({"email": "a@b.co", "password": "long-enough", "name": "A", "role": "admin"}, "role"),
        ({"email": "a@b.co", "password": "long-enough"}, "name"),
        ({"email": "a@b.co", "password": 12345678, "name": "A"}, "password"),
        ({"email": "a\u0000@b.co", "password": "long-enough", "name": "A"}, "email"),
        ({"email": "a@b.co", "password": "long-enough", "name": "A\u0000"}, "name"),
    ],
)
async def test_bad_registration_names_the_field(client: AsyncTestClient, body: dict[str, object], field: str) -> None:
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 400
    assert field in response.text
    users = await client.post("/api/auth/login", json={"email": "a@b.co", "password": "long-enough"})
    assert users.status_code == 401, "nothing was written"


async def test_malformed_json_is_400(client: AsyncTestClient) -> None:
    response = await client.post(
        "/api/auth/register", content=b'{"email": "a@b.co",', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_wrong_password_and_unknown_account_are_the_same_401(client: AsyncTestClient, alice: Account) -> None:
    wrong = await client.post("/api/auth/login", json={"email": alice.email, "password": "not-the-password"})
    unknown = await client.post("/api/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_a_login_email_holding_a_nul_character_is_400(client: AsyncTestClient) -> None:
    """PostgreSQL text cannot hold U+0000: such an email can name no account, and must not reach a query (a 500)."""
    response = await client.post("/api/auth/login", json={"email": "a\u0000@b.co", "password": "whatever1"})
    assert response.status_code == 400, response.text
    assert "email" in response.text


@pytest.mark.parametrize(
    "path", ["/api/me", "/api/agents", "/api/workflows", "/api/workflows/00000000-0000-0000-0000-000000000000"]
)
async def test_private_endpoints_need_a_valid_token(client: AsyncTestClient, alice: Account, path: str) -> None:
    expired = jwt.encode(
        {"sub": alice.id, "exp": datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1), "iat": 0},
        "test-secret-key-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    forged = jwt.encode(
        {"sub": alice.id, "exp": datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)},
        "some-other-secret-of-sufficient-length!!",
        algorithm="HS256",
    )
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
    ):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer", "a 401 names the scheme to authenticate with"
    assert (await client.get(path, headers=alice.headers)).status_code in (200, 404)
