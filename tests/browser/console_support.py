"""What the console's browser tests do again and again beyond testkit.console (shared with `roi bench`): check each
screen (screenshot, axe-core) and keep the page-load measurements."""

from __future__ import annotations

import json
from typing import Any

from testkit.chromium import ARTIFACTS, Browser
from testkit.console import (
    PASSWORD,
    element,
    fill,
    live_updates_on,
    load_measurement,
    new_email,
    register,
    text_of,
    wait_for_screen,
)

__all__ = [
    "PASSWORD",
    "element",
    "fill",
    "live_updates_on",
    "load_measurement",
    "new_email",
    "register",
    "text_of",
    "wait_for_screen",
]


def bearer_headers(browser: Browser) -> dict[str, str]:
    """The API's Authorization header for the session the page signed in with."""
    token = browser.driver.execute_script("return sessionStorage.getItem('roi.token')")
    return {"Authorization": f"Bearer {token}"}


def check_screen(browser: Browser, name: str) -> None:
    """Screenshot it (for a person to look at), and no serious or critical axe-core violation."""
    path = browser.screenshot(name)
    violations = browser.axe_violations()
    assert not violations, f"{name} ({path}): {json.dumps(violations, indent=1)}"


def save_measurements(measurements: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cold-load.json").write_text(json.dumps(measurements, indent=2))
