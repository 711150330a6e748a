"""HTTP caching: `Cache-Control` on every response; agents and the OpenAPI document revalidate with ETag → 304."""

from __future__ import annotations

import httpx
import pytest
from litestar.testing import AsyncTestClient

from tests.integration.support import Account
from tests.integration.test_workflows import create, new_workflow


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store", (response.request.url, response.status_code)


async def test_private_changing_and_error_responses_are_no_store(client: AsyncTestClient, alice: Account) -> None:
    workflow = await create(client, alice)
    responses = [
        await client.get("/health"),
        await client.get("/ready"),
        await client.get("/metrics"),
        await client.get("/api/me", headers=alice.headers),
        await client.get("/api/workflows", headers=alice.headers),
        await client.get(f"/api/workflows/{workflow['id']}", headers=alice.headers),
        await client.get(f"/api/workflows/{workflow['id']}/status", headers=alice.headers),
        await client.post("/api/workflows", json=new_workflow(), headers=alice.headers),
        await client.post("/api/auth/login", json={"email": alice.email, "password": "wrong password"}),
        await client.get("/api/agents"),  # 401: a public route's errors are not public
        await client.get("/api/workflows/not-a-uuid", headers=alice.headers),
        await client.get("/no/such/path"),
        await client.delete("/api/agents", headers=alice.headers),
        await client.get("/schema/no-such-page"),
    ]
    assert {response.status_code for response in responses} >= {200, 201, 401, 404, 405}
    for response in responses:
        assert_no_store(response)
        assert "etag" not in response.headers


@pytest.mark.parametrize(("path", "max_age"), [("/api/agents", 60), ("/schema/openapi.json", 300)])
async def test_shared_documents_are_public_and_revalidate(
    client: AsyncTestClient, alice: Account, path: str, max_age: int
) -> None:
    first = await client.get(path, headers=alice.headers)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"'), "a strong ETag"
    assert etag.endswith('"')
    assert first.headers["cache-control"] == f"public, max-age={max_age}"

    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(path, headers={**alice.headers, "If-None-Match": if_none_match})
        assert again.status_code == 304, if_none_match
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == f"public, max-age={max_age}"
        assert "accept-encoding" in again.headers["vary"].lower()
        assert "content-type" not in again.headers

    stale = await client.get(path, headers={**alice.headers, "If-None-Match": '"something-else"'})
    assert stale.status_code == 200
    assert stale.content == first.content
    assert stale.headers["etag"] == etag


async def test_the_etag_names_the_content_whatever_the_coding(client: AsyncTestClient) -> None:
    path = "/schema/openapi.json"
    codings = ("br", "gzip", "identity")
    responses = [await client.get(path, headers={"Accept-Encoding": coding}) for coding in codings]
    assert [response.headers.get("content-encoding", "identity") for response in responses] == list(codings)
    assert len({response.headers["etag"] for response in responses}) == 1
    gzip_etag = responses[1].headers["etag"]
    revalidated = await client.get(path, headers={"Accept-Encoding": "br", "If-None-Match": gzip_etag})
    assert revalidated.status_code == 304
