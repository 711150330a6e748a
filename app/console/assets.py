"""The console's static files, read once per process from `web/`, each served under a name carrying a hash of its
content (`/console/app.3f2a9c1d0b7e.js`), so that a browser may keep it for a year and a new release is a new URL.

Pages refer to a file by its plain URL (`/console/app.js`): the console page is rewritten to the hashed URLs and
carries an import map from plain to hashed URLs, through which ES modules import each other by plain relative paths
and `import.meta.resolve()` finds the hashed URL of a script loaded on demand. No build step, no Node.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

URL_PREFIX = "/console/"
HASH_HEX_DIGITS = 12
MEDIA_TYPES = {
    ".js": "text/javascript",  # Litestar adds `; charset=utf-8` to text types
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
PAGE = "index.html"
NOT_SERVED = ("vendor/axe-core-",)
"""axe-core checks accessibility in the browser tests, which inject it themselves; no page of the app loads it."""
DOCS_ONLY = ("vendor/rapidoc-", "vendor/redoc-", "vendor/stoplight-elements-", "vendor/swagger-ui-dist-")
"""The API docs' libraries: their pages name them directly, so the console's import map leaves them out."""

REWRITES: dict[str, tuple[tuple[bytes, bytes], ...]] = {
    # Redoc 2.5.4 always renders "API docs by Redocly" with a logo fetched from its CDN, and has no option to leave it
    # out: the docs must not reach outside this server, so the logo becomes an empty image. The vendored file stays
    # as npm ships it (web/vendor/README.md); a Redoc without this URL fails the start-up, so an upgrade is noticed.
    "vendor/redoc-2.5.4/redoc.standalone.js": (
        (
            b"https://cdn.redoc.ly/redoc/logo-mini.svg",
            b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
        ),
    ),
}


def web_dir() -> Path:
    """`web/` of a source checkout, or its copy inside the installed package (see pyproject.toml)."""
    packaged = Path(__file__).with_name("web")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "web"


class AssetError(RuntimeError):
    """The console's files are missing or a page names a file that does not exist."""


@dataclass(frozen=True)
class Asset:
    url: str
    body: bytes
    media_type: str


@dataclass(frozen=True)
class ConsolePage:
    body: bytes
    content_security_policy: str


class ConsoleAssets:
    """Every served file by its hashed URL, and the hashed URL of each plain one."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self.hashed = assets
        self.by_url = {asset.url: asset for asset in assets.values()}

    def url(self, name: str) -> str:
        """The hashed URL of `name`, a path under `web/` such as `vendor/redoc-2.5.4/redoc.standalone.js`."""
        try:
            return self.hashed[name].url
        except KeyError:
            raise AssetError(f"web/{name} is not a console asset") from None

    def import_map(self) -> str:
        console = sorted((name, asset) for name, asset in self.hashed.items() if not name.startswith(DOCS_ONLY))
        imports = {URL_PREFIX + name: asset.url for name, asset in console}
        return json.dumps({"imports": imports}, separators=(",", ":"))

    def page(self, template: str) -> ConsolePage:
        """The console page: every `"/console/<name>"` attribute value replaced by its hashed URL, the import map put
        in its empty `<script type="importmap">`, and a Content-Security-Policy that lets nothing else in."""

        def hashed(match: re.Match[str]) -> str:
            return f"{match[1]}{self.url(match[2])}{match[1]}"

        html = re.sub(r"""(["'])/console/([^"'?#]+)\1""", hashed, template)
        empty_map = '<script type="importmap"></script>'
        if html.count(empty_map) != 1:
            raise AssetError(f"web/{PAGE} must hold exactly one empty {empty_map}")
        import_map = self.import_map()
        html = html.replace(empty_map, f'<script type="importmap">{import_map}</script>')
        digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
        policy = "; ".join(
            [
                "default-src 'self'",
                f"script-src 'self' 'sha256-{digest}'",
                "style-src 'self'",
                "img-src 'self' data:",
                "connect-src 'self'",
                "font-src 'self'",
                "object-src 'none'",
                "base-uri 'none'",
                "form-action 'self'",
                "frame-ancestors 'none'",
            ]
        )
        return ConsolePage(html.encode(), policy)


def _hashed_name(name: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:HASH_HEX_DIGITS]
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{digest}{dot}{suffix}"


def _rewritten(name: str, body: bytes) -> bytes:
    for old, new in REWRITES.get(name, ()):
        if body.count(old) != 1:
            raise AssetError(f"web/{name}: expected {old.decode()!r} exactly once; see REWRITES in {__name__}")
        body = body.replace(old, new)
    return body


@cache
def load_assets(root: Path) -> ConsoleAssets:
    """Read once per process: the same bytes objects are handed out on every request, so the compression
    middleware compresses each file once per coding (app/compression.py `CompressedCopies`)."""
    if not root.is_dir():
        raise AssetError(f"the console's files are not at {root}")
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.suffix not in MEDIA_TYPES or name.startswith(NOT_SERVED):
            continue
        body = _rewritten(name, path.read_bytes())
        assets[name] = Asset(URL_PREFIX + _hashed_name(name, body), body, MEDIA_TYPES[path.suffix])
    return ConsoleAssets(assets)


@cache
def load_page(root: Path) -> ConsolePage:
    return load_assets(root).page((root / PAGE).read_text(encoding="utf-8"))
