"""Driving the console at `/` in Chromium: its forms, its screens, and the page-load measurements; shared by the
browser tests and `roi bench --scenario browser`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from testkit.chromium import Browser

if TYPE_CHECKING:  # Selenium is imported when a browser starts: `roi bench` says it is missing rather than failing
    from selenium.webdriver.remote.webelement import WebElement

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
    found: WebElement = browser.driver.find_element("css selector", css)
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
