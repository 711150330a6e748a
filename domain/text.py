"""Free text the API stores. PostgreSQL's `text` cannot hold U+0000, so a NUL is refused at the edge, with a 400."""

from __future__ import annotations

NO_NUL = r"^[^\x00]*$"
"""The `msgspec.Meta(pattern=...)` of every stored string; the OpenAPI document shows it too."""
