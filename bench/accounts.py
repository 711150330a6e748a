"""Users of the bench's own, signed up through the API as any client would, apart from the seeded one."""

from __future__ import annotations

import httpx
import msgspec

from bench.service import BenchFailed
from testkit.factories import RegistrationFactory


class _Registered(msgspec.Struct):
    id: str


class _Token(msgspec.Struct):
    access_token: str


async def sign_up(base_url: str, scenario: str) -> tuple[str, str]:
    """A new user's bearer token and id (its channel is `user:<id>`); `scenario` names the row that failed."""
    registration = RegistrationFactory.build()
    body = {"email": registration.email, "password": registration.password, "name": registration.name}
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as api:
        created = await api.post("/api/auth/register", json=body)
        login = await api.post("/api/auth/login", json={k: body[k] for k in ("email", "password")})
    if created.status_code != 201 or login.status_code != 200:
        raise BenchFailed(f"{scenario}: cannot sign up: {created.status_code} {login.status_code} {login.text}")
    user = msgspec.json.decode(created.content, type=_Registered)
    return msgspec.json.decode(login.content, type=_Token).access_token, user.id
