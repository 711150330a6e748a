"""The API docs at `/schema` (Redoc), `/schema/swagger`, `/schema/elements` and `/schema/rapidoc`, complete
offline: each UI's pinned copy is served from `web/vendor/` like the console's files, with no web font, favicon or
logo fetched from elsewhere."""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import (
    OpenAPIRenderPlugin,
    RapidocRenderPlugin,
    RedocRenderPlugin,
    StoplightRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)

from app.console.assets import ConsoleAssets, load_assets, web_dir

NO_FAVICON = "<link rel='icon' href='data:,'>"
"""Without a favicon link, browsers ask for /favicon.ico; Litestar's default is an image on a CDN."""

SYSTEM_FONTS = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
MONO_FONTS = "ui-monospace, 'SFMono-Regular', Menlo, Consolas, 'Liberation Mono', monospace"

REDOC = "vendor/redoc-2.5.4/redoc.standalone.js"
SWAGGER = "vendor/swagger-ui-dist-5.36.0/"
ELEMENTS = "vendor/stoplight-elements-9.0.25/"
RAPIDOC = "vendor/rapidoc-9.3.8/rapidoc-min.js"


class OfflineRapidocRenderPlugin(RapidocRenderPlugin):
    """RapiDoc loads Open Sans from fonts.gstatic.com unless told `load-fonts="false"`; Litestar's page does not."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = escape(str(openapi_schema["info"]["title"]))
        spec_url = escape(self.get_openapi_json_route(request))
        return f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <title>{title}</title>
    {self.favicon}
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <script src="{escape(self.js_url)}"></script>
    {self.style}
  </head>
  <body>
    <rapi-doc spec-url="{spec_url}" load-fonts="false" regular-font="{SYSTEM_FONTS}" mono-font="{MONO_FONTS}"
      show-header="false"></rapi-doc>
  </body>
</html>""".encode()


def offline_render_plugins(assets: ConsoleAssets | None = None) -> list[OpenAPIRenderPlugin]:
    """Redoc first, so that it also answers `/schema` itself, as before."""
    assets = assets or load_assets(web_dir())
    return [
        RedocRenderPlugin(js_url=assets.url(REDOC), google_fonts=False, favicon=NO_FAVICON),
        SwaggerRenderPlugin(
            js_url=assets.url(SWAGGER + "swagger-ui-bundle.js"),
            css_url=assets.url(SWAGGER + "swagger-ui.css"),
            standalone_preset_js_url=assets.url(SWAGGER + "swagger-ui-standalone-preset.js"),
            favicon=NO_FAVICON,
        ),
        StoplightRenderPlugin(
            js_url=assets.url(ELEMENTS + "web-components.min.js"),
            css_url=assets.url(ELEMENTS + "styles.min.css"),
            favicon=NO_FAVICON,
        ),
        OfflineRapidocRenderPlugin(js_url=assets.url(RAPIDOC), favicon=NO_FAVICON),
        YamlRenderPlugin(),
    ]
