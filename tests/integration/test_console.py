"""The web console's page and files, and the offline API docs, as HTTP sees them (the browser tests are in
tests/browser): fingerprinted immutable files compressed once, a page revalidated on every load, nothing from
elsewhere, HEAD answered."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from app.console.assets import load_assets, web_dir

WEB = web_dir()
DOCS_PAGES = ("/schema", "/schema/redoc", "/schema/swagger", "/schema/elements", "/schema/rapidoc")


def referenced_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


def import_map(html: str) -> dict[str, str]:
    found = re.search(r'<script type="importmap">(.*?)</script>', html, re.DOTALL)
    assert found, html[:500]
    imports: dict[str, str] = json.loads(found[1])["imports"]
    return imports


async def test_the_page_is_revalidated_and_names_only_fingerprinted_files(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert "etag" in page.headers
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    urls = [url for url in referenced_urls(page.text) if url.startswith("/console/")]
    assert urls, page.text
    assert all(re.search(r"\.[0-9a-f]{12}\.(js|css)$", url) for url in urls), urls
    remote = [url for url in referenced_urls(page.text) if re.match(r"(https?:)?//", url)]
    assert remote == []
    imports = import_map(page.text)
    assert imports["/console/live-events.js"].startswith("/console/live-events.")
    assert not any("redoc" in plain for plain in imports), "the docs' libraries are not the console's"

    revalidated = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert revalidated.status_code == 304


async def test_files_are_immutable_and_their_names_change_with_their_content(client: AsyncTestClient[Any]) -> None:
    imports = import_map((await client.get("/")).text)
    for plain, hashed in imports.items():
        answer = await client.get(hashed, headers={"Accept-Encoding": "identity"})
        assert answer.status_code == 200, hashed
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        media_type = "text/css" if plain.endswith(".css") else "text/javascript"
        assert answer.headers["content-type"] == f"{media_type}; charset=utf-8"
        source = (WEB / plain.removeprefix("/console/")).read_bytes()
        if "redoc" not in plain:
            assert answer.content == source
        assert hashlib.sha256(answer.content).hexdigest()[:12] in hashed

    assert (await client.get("/console/app.js")).status_code == 404
    assert (await client.get("/console/app.000000000000.js")).status_code == 404


@pytest.mark.parametrize("coding", ["br", "gzip"])
async def test_files_are_compressed_once(client: AsyncTestClient[Any], coding: str) -> None:
    url = import_map((await client.get("/")).text)["/console/vendor/tus-js-client-4.3.1/tus.min.js"]
    answer = await client.get(url, headers={"Accept-Encoding": coding})
    assert answer.headers["content-encoding"] == coding
    assert answer.headers["vary"] == "Accept-Encoding"
    # httpx undoes one coding: what is left must be the file itself, not a second layer of compression.
    assert answer.content == (WEB / "vendor/tus-js-client-4.3.1/tus.min.js").read_bytes()


async def test_head_answers_like_get_without_a_body(client: AsyncTestClient[Any]) -> None:
    asset = import_map((await client.get("/")).text)["/console/app.js"]
    for path in ("/", asset, *DOCS_PAGES):
        got = await client.get(path, headers={"Accept-Encoding": "identity"})
        head = await client.head(path, headers={"Accept-Encoding": "identity"})
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
        assert head.headers["cache-control"] == got.headers["cache-control"]


@pytest.mark.parametrize("path", DOCS_PAGES)
async def test_docs_pages_load_nothing_from_elsewhere(client: AsyncTestClient[Any], path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    urls = referenced_urls(page.text)
    assert urls, page.text
    for url in urls:
        assert url.startswith(("/console/vendor/", "/schema/", "data:")), f"{path} loads {url}"
    assert "fonts.googleapis.com" not in page.text
    for url in urls:
        if url.startswith("/console/"):
            assert (await client.get(url)).status_code == 200, url


async def test_redoc_is_served_without_its_cdn_logo(client: AsyncTestClient[Any]) -> None:
    page = await client.get("/schema")
    (url,) = [url for url in referenced_urls(page.text) if "redoc" in url]
    script = (await client.get(url)).content
    assert b"cdn.redoc.ly" not in script
    assert b"Redoc" in script


def test_vendored_files_are_as_recorded() -> None:
    vendor = WEB / "vendor"
    for line in (vendor / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    recorded = {line.split(maxsplit=1)[1] for line in (vendor / "SHA256SUMS").read_text().splitlines()}
    present = {path.relative_to(vendor).as_posix() for path in vendor.glob("*/*")}
    assert present == recorded


def test_every_console_module_is_preloaded() -> None:
    """The page names each of its modules with `modulepreload`, so the browser fetches them at once, not as a
    chain of imports."""
    page = (WEB / "index.html").read_text()
    preloaded = set(re.findall(r'rel="modulepreload" href="/console/([^"]+)"', page))
    modules = {path.name for path in WEB.glob("*.js")}
    assert preloaded == modules


def test_axe_core_is_not_served() -> None:
    assert not [name for name in load_assets(WEB).hashed if "axe" in name]


def test_a_missing_web_folder_is_an_error(tmp_path: Path) -> None:
    from app.console.assets import AssetError

    with pytest.raises(AssetError):
        load_assets(tmp_path / "nowhere")
