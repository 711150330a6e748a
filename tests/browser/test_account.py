"""A person changes their password and signs out in the console: the server refuses the old tokens afterwards, and
the page carries on (or ends) the way the person asked."""

from __future__ import annotations

import httpx

from testkit.chromium import Browser
from tests.browser.console_support import (
    PASSWORD,
    check_screen,
    element,
    fill,
    live_updates_on,
    new_email,
    register,
    text_of,
    wait_for_screen,
)
from tests.browser.service import ConsoleService

NEW_PASSWORD = "a much newer passphrase"
STORED_TOKEN = "return sessionStorage.getItem('roi.token') ?? localStorage.getItem('roi.token')"


def me_status(service: ConsoleService, token: str) -> int:
    return httpx.get(f"{service.base_url}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_changing_the_password_and_signing_out(service: ConsoleService, browser: Browser) -> None:
    email = new_email()
    register(browser, service.base_url, email)
    old_token = browser.driver.execute_script(STORED_TOKEN)
    assert me_status(service, old_token) == 200

    element(browser, "#change-password").click()
    wait_for_screen(browser, "password-title")
    fill(browser, "#password-current", "not my password")
    fill(browser, "#password-new", NEW_PASSWORD)
    element(browser, "#password-form button[type=submit]").click()
    browser.wait_for(lambda: "wrong password" in text_of(browser, "#password-error"), "the refusal")
    check_screen(browser, "account-01-wrong-current-password")
    assert me_status(service, old_token) == 200, "a refused change changes nothing"

    fill(browser, "#password-current", PASSWORD)
    fill(browser, "#password-new", NEW_PASSWORD)
    element(browser, "#password-form button[type=submit]").click()
    wait_for_screen(browser, "workflows-title")
    browser.wait_for(lambda: live_updates_on(browser), "live updates again, on the new token")
    new_token = browser.driver.execute_script(STORED_TOKEN)
    assert new_token != old_token
    assert me_status(service, old_token) == 401
    assert me_status(service, new_token) == 200
    check_screen(browser, "account-02-password-changed")

    element(browser, "#sign-out").click()
    wait_for_screen(browser, "sign-in-title")
    assert browser.driver.execute_script(STORED_TOKEN) is None
    assert me_status(service, new_token) == 401, "signing out revoked the token on the server"

    fill(browser, "#sign-in-email", email)
    fill(browser, "#sign-in-password", NEW_PASSWORD)
    element(browser, "#sign-in-form button[type=submit]").click()
    wait_for_screen(browser, "workflows-title")
    assert browser.console_errors(ignore=lambda message: "/api/auth/password" in message and "400" in message) == []
