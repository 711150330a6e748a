"""Compression is right for each client's Accept-Encoding, also on a URL served from the Redis cache."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable

import brotli
from litestar.testing import AsyncTestClient

from app.compression import MINIMUM_SIZE
from tests.integration.support import Account
from tests.integration.test_workflows import create

DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "br": brotli.decompress,
    "gzip": gzip.decompress,
    "identity": lambda raw: raw,
}


async def raw_get(client: AsyncTestClient, path: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The body as sent on the wire, not decoded by the HTTP client."""
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        return b"".join([chunk async for chunk in response.aiter_raw()]), dict(response.headers)


async def bodies_per_coding(client: AsyncTestClient, path: str, account: Account) -> dict[str, bytes]:
    """Ask `path` with br, gzip, identity, then br again: a cache keyed without Accept-Encoding would show here."""
    bodies: dict[str, bytes] = {}
    for coding in ("br", "gzip", "identity", "br"):
        raw, headers = await raw_get(client, path, {**account.headers, "Accept-Encoding": coding})
        assert headers["vary"] == "Accept-Encoding"
        body = DECODERS[headers.get("content-encoding", "identity")](raw)
        expected_coding = coding if len(body) >= MINIMUM_SIZE else "identity"
        assert headers.get("content-encoding", "identity") == expected_coding, (path, coding)
        assert int(headers["content-length"]) == len(raw)
        json.loads(body)
        bodies[coding] = body
    assert len(set(bodies.values())) == 1, "every coding carries the same document"
    return bodies


async def test_each_coding_decodes_to_the_same_document_on_cached_urls(client: AsyncTestClient, alice: Account) -> None:
    for _ in range(6):
        await create(client, alice)

    workflows = await bodies_per_coding(client, "/api/workflows", alice)
    await bodies_per_coding(client, "/api/agents", alice)

    assert len(workflows["identity"]) > MINIMUM_SIZE, "the list is large enough to be compressed"


async def test_q_values_are_honoured(client: AsyncTestClient, alice: Account) -> None:
    for _ in range(6):
        await create(client, alice)
    cases = {"br;q=0, gzip": "gzip", "gzip;q=0.2, br;q=0.9": "br", "br;q=0, gzip;q=0": "identity", "*": "br"}
    for accept_encoding, expected in cases.items():
        raw, headers = await raw_get(client, "/api/workflows", {**alice.headers, "Accept-Encoding": accept_encoding})
        assert headers.get("content-encoding", "identity") == expected, accept_encoding
        json.loads(DECODERS[expected](raw))


async def test_small_bodies_are_sent_as_they_are(client: AsyncTestClient) -> None:
    raw, headers = await raw_get(client, "/health", {"Accept-Encoding": "br, gzip"})
    assert "content-encoding" not in headers
    assert json.loads(raw) == {"status": "ok"}


async def test_a_page_compressed_once_is_never_served_after_it_changed(client: AsyncTestClient, alice: Account) -> None:
    """The hot page's compressed form is remembered; a write must still show in every coding at once."""
    for _ in range(6):
        await create(client, alice)
    before = await bodies_per_coding(client, "/api/workflows", alice)

    added = await create(client, alice)
    after = await bodies_per_coding(client, "/api/workflows", alice)

    assert after["br"] != before["br"]
    assert json.loads(after["br"])["items"][0]["id"] == added["id"], "newest first, in br and gzip alike"
    assert json.loads(after["gzip"]) == json.loads(after["identity"])
