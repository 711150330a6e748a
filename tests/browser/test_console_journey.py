"""A person's whole path through the console, in headless Chromium against a real server and worker: register,
upload a ledger (a bad one first), analyse it, analyse typed-in cash flows with a simulation, watch a long run's
live progress and cancel it, delete it, sign out. Every screen is screenshotted and checked with axe-core; no
request may leave 127.0.0.1 and the browser may log no error. The cold load is measured and reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from testkit.chromium import Browser
from testkit.ledgers import csv_ledger_bytes
from tests.browser.console_support import (
    PASSWORD,
    bearer_headers,
    check_screen,
    element,
    fill,
    live_updates_on,
    load_measurement,
    new_email,
    register,
    save_measurements,
    text_of,
    wait_for_screen,
)
from tests.browser.service import ConsoleService

pytestmark = pytest.mark.slow

COLD_LOAD_GOAL_BYTES = 150 * 1024
INTERACTIVE_GOAL_MS = 500.0
LONG_RUN_FLOWS = "-5000 " + " ".join(["100"] * 99)
RUN_S = 60.0


def ledger_file(folder: Path) -> tuple[Path, int]:
    """A testkit ledger of 5,000 rows over 24 periods, with an investment in period 0 so that it can pay back."""
    data, sums = csv_ledger_bytes(5000, periods=24)
    investment = sum(sums) * 0.3
    path = folder / "ledger.csv"
    path.write_bytes(data + f"2020-01-01,1000,0,-{investment:.2f},capex\n".encode())
    return path, 5001


def provoked(message: str) -> bool:
    """Chrome logs every 4xx answer as an error: those this test asked for (a failed login)."""
    expected = ("/api/auth/login - ",)
    return "Failed to load resource" in message and any(path in message for path in expected)


def report(name: str, measured: dict[str, Any]) -> str:
    return (
        f"{name}: {measured['requests']} requests, {measured['transfer_bytes'] / 1024:.1f} KB transferred "
        f"({measured['compressed_body_bytes'] / 1024:.1f} KB compressed bodies, "
        f"{measured['body_bytes'] / 1024:.1f} KB uncompressed; goal ≤ {COLD_LOAD_GOAL_BYTES // 1024} KB), "
        f"DOM interactive {measured['dom_interactive_ms']:.0f} ms, "
        f"console interactive {measured['console_interactive_ms'] or 0:.0f} ms (goal ≤ {INTERACTIVE_GOAL_MS:.0f} ms)"
    )


def wait_for_status(browser: Browser, status: str, timeout_s: float = RUN_S) -> None:
    browser.wait_for(
        lambda: element(browser, "#workflow-status .badge").text == status, f"workflow status {status}", timeout_s
    )


def create_workflow(
    browser: Browser, name: str, flows: str | None = None, simulations: int = 0, seed: str = ""
) -> None:
    element(browser, "#new-workflow").click()
    wait_for_screen(browser, "create-title")
    fill(browser, "#create-name", name)
    if flows is not None:
        fill(browser, "#create-cash-flows", flows)
    fill(browser, "#create-simulations", str(simulations))
    fill(browser, "#create-seed", seed)


def back_to_list(browser: Browser) -> None:
    element(browser, ".breadcrumb a").click()
    wait_for_screen(browser, "workflows-title")


RECORD_ROW_STATUSES = """
window.rowStatuses = {};
const record = (row) => {
  if (row.dataset && row.dataset.id) (window.rowStatuses[row.dataset.id] ||= []).push(row.dataset.status);
};
new MutationObserver((changes) => {
  for (const change of changes) {
    if (change.type === "attributes") record(change.target);
    for (const node of change.addedNodes || []) if (node.nodeType === 1) {
      record(node);
      node.querySelectorAll("tr[data-id]").forEach(record);
    }
  }
}).observe(document.querySelector("#workflow-table"), {subtree: true, childList: true, attributes: true,
                                                      attributeFilter: ["data-status"]});
"""


def test_a_persons_whole_path(service: ConsoleService, browser: Browser, tmp_path: Path) -> None:
    driver = browser.driver
    measurements: dict[str, Any] = {}

    # Signed out, cold: the sign-in screen.
    driver.get(f"{service.base_url}/")
    wait_for_screen(browser, "sign-in-title")
    measurements["signed_out"] = load_measurement(browser)
    check_screen(browser, "01-sign-in")

    # A bad password at sign-in: the API's own words.
    fill(browser, "#sign-in-email", "nobody@example.com")
    fill(browser, "#sign-in-password", "not the password")
    element(browser, "#sign-in-form button[type=submit]").click()
    browser.wait_for(lambda: "wrong email or password" in text_of(browser, "#sign-in-error"), "the login error")
    check_screen(browser, "02-sign-in-error")
    element(browser, "a[href='#/register']").click()
    wait_for_screen(browser, "register-title")
    fill(browser, "#register-password", "short")
    element(browser, "#register-form button[type=submit]").click()
    browser.wait_for(lambda: element(browser, "#register-error").is_displayed(), "the register error")
    check_screen(browser, "03-register-invalid")

    email = new_email()
    register(browser, service.base_url, email)
    headers = bearer_headers(browser)
    assert "Ada Lovelace" in text_of(browser, "#who")
    check_screen(browser, "04-workflows-empty")

    # A ledger that the service refuses: the line its error names.
    create_workflow(browser, "Ledger analysis")
    element(browser, "input[name=source][value=ledger]").click()
    bad = tmp_path / "bad.csv"
    bad.write_text("period,cash_flow\n0,-100\n1,abc\n")
    element(browser, "#create-ledger").send_keys(str(bad))
    browser.wait_for(lambda: element(browser, "#upload-error").is_displayed(), "the parse error")
    assert "line 3: cash_flow 'abc' is not a number" in text_of(browser, "#upload-error")
    check_screen(browser, "05-upload-refused")

    # A good ledger through the file picker: progress, then ready, then chosen.
    path, rows = ledger_file(tmp_path)
    element(browser, "#create-ledger").send_keys(str(path))
    browser.wait_for(lambda: text_of(browser, "#upload-status").startswith("Ready"), "the ledger is ready", RUN_S)
    assert f"{rows:,} rows, 24 periods" in text_of(browser, "#upload-status")
    assert driver.execute_script("return document.querySelector('#upload-progress').value") == 1
    assert not element(browser, "#upload-error").is_displayed()
    assert element(browser, "#create-upload").get_attribute("value")
    check_screen(browser, "06-upload-ready")
    element(browser, "#create-form button[type=submit]").click()
    wait_for_screen(browser, "workflow-title", "Ledger analysis")
    wait_for_status(browser, "succeeded")
    browser.wait_for(lambda: element(browser, "#chart-cumulative canvas"), "the ledger's charts")
    assert "discounted payback" in text_of(browser, "#chart-cumulative figcaption")
    check_screen(browser, "07-ledger-result")
    back_to_list(browser)

    # Typed-in cash flows with a simulation: every chart, the numbers as the API has them.
    create_workflow(browser, "Warehouse", "-1000, 300, 400, 500", simulations=20000, seed="7")
    check_screen(browser, "08-new-workflow")
    element(browser, "#create-form button[type=submit]").click()
    wait_for_screen(browser, "workflow-title", "Warehouse")
    wait_for_status(browser, "succeeded")
    browser.wait_for(lambda: element(browser, "#chart-npv canvas"), "the NPV chart")
    warehouse = driver.current_url.rsplit("/", 1)[-1]
    result = httpx.get(f"{service.base_url}/api/workflows/{warehouse}/result", headers=headers).json()
    shown = float(text_of(browser, "#probability-positive").split("=")[1].strip(" %"))
    assert abs(shown - result["simulation"]["probability_npv_positive"] * 100) <= 0.05
    for chart in ("#chart-cash-flows", "#chart-cumulative", "#chart-npv"):
        assert element(browser, f"{chart} canvas").size["width"] > 300, chart
    assert [step.get_attribute("data-status") for step in driver.find_elements("css selector", "#steps li")] == [
        "succeeded"
    ] * 5
    check_screen(browser, "09-typed-result")
    back_to_list(browser)

    # A long run: its progress moves live, then it is cancelled.
    create_workflow(browser, "Long run", LONG_RUN_FLOWS, simulations=1_000_000)
    element(browser, "#create-form button[type=submit]").click()
    wait_for_screen(browser, "workflow-title", "Long run")
    browser.wait_for(
        lambda: (
            0 < driver.execute_script("return document.querySelector('#workflow-progress').value") < 1
            and element(browser, "#steps li[data-kind=simulate]").get_attribute("data-status") == "running"
        ),
        "live progress in the simulate step",
        RUN_S,
    )
    check_screen(browser, "10-running")
    element(browser, "#cancel-workflow").click()
    wait_for_status(browser, "cancelled", 15)
    check_screen(browser, "11-cancelled")

    # Delete it, through the confirmation dialog.
    element(browser, "#delete-workflow").click()
    browser.wait_for(lambda: element(browser, "dialog.confirm").is_displayed(), "the delete dialog")
    check_screen(browser, "12-delete-dialog")
    element(browser, "dialog.confirm button[value=delete]").click()
    wait_for_screen(browser, "workflows-title")
    table_rows = "#workflow-table tbody tr"
    browser.wait_for(lambda: len(driver.find_elements("css selector", table_rows)) == 2, "two rows")
    statuses = [row.get_attribute("data-status") for row in driver.find_elements("css selector", table_rows)]
    assert statuses == ["succeeded", "succeeded"]
    check_screen(browser, "13-workflows")

    # A status change made elsewhere (another client) reaches the list live. A short run can pass through queued and
    # running faster than the test looks, so every status the row shows is recorded as the page shows it.
    driver.execute_script(RECORD_ROW_STATUSES)
    run = httpx.post(f"{service.base_url}/api/workflows/{warehouse}/run", headers=headers)
    assert run.status_code == 202, run.text
    browser.wait_for(
        lambda: (
            {"queued", "running"}
            & set(driver.execute_script("return window.rowStatuses[arguments[0]] || []", warehouse))
        ),
        "the run started elsewhere shows in the list",
    )
    browser.wait_for(
        lambda: element(browser, f"tr[data-id='{warehouse}']").get_attribute("data-status") == "succeeded",
        "and its end",
        RUN_S,
    )

    # Signed in, cold cache: the list screen.
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.refresh()
    wait_for_screen(browser, "workflows-title")
    browser.wait_for(lambda: driver.find_elements("css selector", "#workflow-table tbody tr"), "the list")
    browser.wait_for(lambda: live_updates_on(browser), "live updates")
    measurements["signed_in"] = load_measurement(browser)

    # Sign out: the token is forgotten, and the page says so.
    element(browser, "#sign-out").click()
    wait_for_screen(browser, "sign-in-title")
    assert "signed out" in text_of(browser, "#auth-message")
    stored = driver.execute_script("return sessionStorage.getItem('roi.token') ?? localStorage.getItem('roi.token')")
    assert stored is None
    check_screen(browser, "14-signed-out")

    # And in again, with the password from before.
    fill(browser, "#sign-in-email", email)
    fill(browser, "#sign-in-password", PASSWORD)
    element(browser, "#sign-in-form button[type=submit]").click()
    wait_for_screen(browser, "workflows-title")

    assert browser.remote_requests() == []
    assert browser.console_errors(ignore=provoked) == []
    save_measurements(measurements)
    print()
    for name, measured in measurements.items():
        print(report(name, measured))
    print(json.dumps({name: measured["files"] for name, measured in measurements.items()}, indent=1))


def test_the_list_pages_with_the_cursor_and_filters(service: ConsoleService, browser: Browser) -> None:
    register(browser, service.base_url, new_email())
    driver = browser.driver
    headers = bearer_headers(browser)
    for number in range(23):
        body = {"name": f"Case {number:02d}", "cash_flows": [-100, 60, 60], "parameters": {"discount_rate": 0.05}}
        assert httpx.post(f"{service.base_url}/api/workflows", json=body, headers=headers).status_code == 201
    driver.refresh()
    rows = "#workflow-table tbody tr"
    browser.wait_for(lambda: len(driver.find_elements("css selector", rows)) == 20, "the first page")
    assert text_of(browser, "#workflow-table caption").endswith("20 of 23 shown")
    element(browser, "#load-more").click()
    browser.wait_for(lambda: len(driver.find_elements("css selector", rows)) == 23, "the second page")
    assert not element(browser, "#load-more").is_displayed()
    assert driver.execute_script("return document.activeElement.textContent") == "Case 02", "focus on the first new row"
    names = [row.text.split("\n")[0] for row in driver.find_elements("css selector", f"{rows} th")]
    assert names == [f"Case {number:02d}" for number in reversed(range(23))]
    pages = driver.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name)"
        ".filter((url) => url.includes('/api/workflows?'))"
    )
    assert [url for url in pages if "cursor=" in url]
    assert not [url for url in pages if "offset=" in url]

    Select(element(browser, "#status-filter")).select_by_value("succeeded")
    browser.wait_for(lambda: element(browser, "p.empty").is_displayed(), "the empty filter")
    assert text_of(browser, "p.empty") == "No succeeded workflows."
    check_screen(browser, "15-filtered-empty")
    Select(element(browser, "#status-filter")).select_by_value("draft")
    browser.wait_for(lambda: len(driver.find_elements("css selector", rows)) == 20, "drafts")
    assert browser.console_errors() == []


def test_the_console_works_from_the_keyboard(service: ConsoleService, browser: Browser) -> None:
    email = new_email()
    registration = {"email": email, "password": PASSWORD, "name": "Kay Board"}
    assert httpx.post(f"{service.base_url}/api/auth/register", json=registration).status_code == 201
    driver = browser.driver
    driver.get(f"{service.base_url}/")
    wait_for_screen(browser, "sign-in-title")

    def focused() -> str:
        value: str = driver.execute_script(
            "const element = document.activeElement; return element.id || element.textContent.trim()"
        )
        return value

    def press(*keys: str) -> None:
        ActionChains(driver).send_keys(*keys).perform()

    press(Keys.TAB)
    assert focused() == "Skip to content"
    press(Keys.ENTER)
    assert focused() == "main", "the skip link moves focus into the screen"
    assert driver.execute_script("return location.hash") == "#/sign-in", "and leaves the route alone"
    press(Keys.TAB)
    assert focused() == "sign-in-email"
    press(email, Keys.TAB)
    assert focused() == "sign-in-password"
    press(PASSWORD, Keys.ENTER)
    wait_for_screen(browser, "workflows-title")
    assert focused() == "workflows-title", "focus follows the navigation"
    press(Keys.TAB)
    assert focused() == "new-workflow"
    press(Keys.ENTER)
    wait_for_screen(browser, "create-title")
    press(Keys.TAB, "Keyed in")
    assert focused() == "create-name"
    press(Keys.ENTER)  # submits the form from a text field
    wait_for_screen(browser, "workflow-title", "Keyed in")
    wait_for_status(browser, "succeeded")
    browser.wait_for(lambda: focused() == "workflow-title", "focus on the new screen")
    press(Keys.TAB)
    assert focused() == "run-workflow"
    press(Keys.TAB)
    assert focused() == "delete-workflow", "past the disabled Cancel"
    press(Keys.ENTER)
    browser.wait_for(lambda: element(browser, "dialog.confirm").is_displayed(), "the dialog")
    assert focused() == "Keep it", "the safe choice has the focus"
    press(Keys.ESCAPE)
    browser.wait_for(lambda: focused() == "delete-workflow", "focus back on the button")
