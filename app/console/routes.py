"""`GET /`: the console page, revalidated on every load; `GET /console/<name>.<hash>.<ext>`: its files, immutable."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler

from app.console.assets import load_assets, load_page, web_dir

IMMUTABLE = "public, max-age=31536000, immutable"
PUBLIC = {"exclude_from_auth": True}


def console_handlers(root: Path | None = None) -> list[HTTPRouteHandler]:
    """The page and its files, read from `root` (default: `web/`) once per process."""
    root = root or web_dir()
    assets = load_assets(root)
    page = load_page(root)

    # `no-cache` with an ETag (app/http_cache): each load asks, a current copy costs a bodiless 304.
    @get("/", media_type=MediaType.HTML, include_in_schema=False, opt={**PUBLIC, "cache_control": "no-cache"})
    async def console_page() -> Response[bytes]:
        return Response(
            page.body, media_type=MediaType.HTML, headers={"Content-Security-Policy": page.content_security_policy}
        )

    @get("/console/{name:path}", include_in_schema=False, opt=PUBLIC)
    async def console_asset(name: str) -> Response[bytes]:
        asset = assets.by_url.get("/console" + name)
        if asset is None:
            raise NotFoundException("no console file with this name")
        return Response(asset.body, media_type=asset.media_type, headers={"Cache-Control": IMMUTABLE})

    return [console_page, console_asset]
