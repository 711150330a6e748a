"""The web console: its page at `/`, its fingerprinted files under `/console/`, and the offline API docs."""

from app.console.docs import offline_render_plugins
from app.console.head import head_as_get
from app.console.routes import console_handlers

__all__ = ["console_handlers", "head_as_get", "offline_render_plugins"]
