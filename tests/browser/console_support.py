"""What the console's browser tests do again and again: fill its forms, wait for its screens, check each screen
(screenshot, axe-core), and read the page-load measurements."""

from __future__ import annotations

import json
import uuid
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.browser.chromium import ARTIFACTS, Browser

PASSWORD = "correct horse battery staple"
LOAD_MEASUREMENT = """
const navigation = performance.getEntriesByType("navigation")[0];
const entries = [navigation, ...performance.getEntriesByType("resource")];
const interactive = performance.getEntriesByName("console-interactive")[0];
const sum = (field) => entries.reduce((total, entry) => total + entry[field], 0);
return {
  requests: entries.length,
  transfer_bytes: sum("transferSize"),
  compressed_body_bytes: sum("encodedBodySize"),
  body_bytes: sum("decodedBodySize"),
  dom_interactive_ms: navigation.domInteractive,
  dom_content_loaded_ms: navigation.domContentLoadedEventEnd,
  console_interactive_ms: interactive ? interactive.startTime : null,
  files: entries.map((entry) => [new URL(entry.name).pathname, entry.transferSize, entry.decodedBodySize]),
};
"""


def element(browser: Browser, css: str) -> WebElement:
    found: WebElement = browser.driver.find_element(By.CSS_SELECTOR, css)
    return found


def wait_for_screen(browser: Browser, heading_id: str, text: str | None = None) -> None:
    def shown() -> bool:
        heading = element(browser, f"h1#{heading_id}")
        return text is None or heading.text == text

    browser.wait_for(shown, f"the screen with h1#{heading_id} {text or ''}")


def fill(browser: Browser, css: str, value: str) -> None:
    field = element(browser, css)
    field.clear()
    field.send_keys(value)


def text_of(browser: Browser, css: str) -> str:
    return element(browser, css).text


def check_screen(browser: Browser, name: str) -> None:
    """Screenshot it (for a person to look at), and no serious or critical axe-core violation."""
    path = browser.screenshot(name)
    violations = browser.axe_violations()
    assert not violations, f"{name} ({path}): {json.dumps(violations, indent=1)}"


def live_updates_on(browser: Browser) -> bool:
    return element(browser, "#connection").get_attribute("data-state") == "open"


def new_email() -> str:
    return f"ada-{uuid.uuid4().hex[:10]}@example.com"


def register(browser: Browser, base_url: str, email: str, name: str = "Ada Lovelace") -> None:
    browser.driver.get(f"{base_url}/#/register")
    wait_for_screen(browser, "register-title")
    fill(browser, "#register-name", name)
    fill(browser, "#register-email", email)
    fill(browser, "#register-password", PASSWORD)
    element(browser, "#register-form button[type=submit]").click()
    wait_for_screen(browser, "workflows-title")
    browser.wait_for(lambda: live_updates_on(browser), "live updates")


def load_measurement(browser: Browser) -> dict[str, Any]:
    measured: dict[str, Any] = browser.driver.execute_script(LOAD_MEASUREMENT)
    return measured


def save_measurements(measurements: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cold-load.json").write_text(json.dumps(measurements, indent=2))
