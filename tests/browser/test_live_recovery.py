"""The console recovers by itself when the server restarts under it: the worker goes on with a run while the API
is down, the page reconnects when it is back, resubscribes with `since`, and gets every event it missed, once and
in order, then shows the run's end and its result without a reload. And a change made between a page's first read and
its first subscription is shown too (the subscription starts at the channel's current `seq`)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from testkit.chromium import Browser
from tests.browser.console_support import bearer_headers, check_screen, element, new_email, register, wait_for_screen
from tests.browser.service import ConsoleService

pytestmark = pytest.mark.slow

NAME = "Through a restart"
LONG_RUN = {
    "name": NAME,
    "cash_flows": [-5000.0] + [100.0] * 99,
    "parameters": {"discount_rate": 0.01, "simulations": 1_000_000, "seed": 3},
}
RECORD_EVENTS = """
const done = arguments[arguments.length - 1];
import("/console/live-events.js").then(({LiveEvents}) => {
  window.recorded = {seqs: [], events: [], states: [], resyncs: []};
  const live = new LiveEvents({token: () => sessionStorage.getItem("roi.token"),
                              onStateChange: (state) => window.recorded.states.push(state)});
  live.subscribe(arguments[0], {
    onEvent: (frame) => { window.recorded.seqs.push(frame.seq); window.recorded.events.push(frame.event); },
    onResync: (channel, {reason}) => window.recorded.resyncs.push(reason),
    onSubscribed: () => done(true),
  }, {since: 0});
  live.connect();
});
"""


@pytest.fixture
def restartable(settings: Settings, tmp_path: Path) -> Iterator[ConsoleService]:
    """A server of this test's own, since it stops and starts it."""
    service = ConsoleService(settings, tmp_path)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def recorded(browser: Browser) -> dict[str, Any]:
    value: dict[str, Any] = browser.driver.execute_script("return window.recorded")
    return value


def connection(browser: Browser) -> str:
    return element(browser, "#connection").get_attribute("data-state") or ""


def test_the_console_recovers_after_the_server_restarts(restartable: ConsoleService, browser: Browser) -> None:
    base = restartable.base_url
    register(browser, base, new_email())
    headers = bearer_headers(browser)
    workflow = httpx.post(f"{base}/api/workflows", json=LONG_RUN, headers=headers).json()
    browser.driver.get(f"{base}/#/workflows/{workflow['id']}")
    wait_for_screen(browser, "workflow-title", NAME)
    assert browser.driver.execute_async_script(RECORD_EVENTS, f"workflow:{workflow['id']}")

    assert httpx.post(f"{base}/api/workflows/{workflow['id']}/run", headers=headers).status_code == 202
    browser.wait_for(lambda: "workflow.progress" in recorded(browser)["events"], "the simulation's progress", 60)
    restartable.stop_server()
    browser.wait_for(lambda: connection(browser) == "reconnecting", "the page notices")
    check_screen(browser, "30-server-gone")
    seen_while_down = len(recorded(browser)["seqs"])

    restartable.start()
    browser.wait_for(lambda: connection(browser) == "open", "the page reconnects", 60)
    browser.wait_for(lambda: element(browser, "#workflow-status .badge").text == "succeeded", "the run's end", 60)
    browser.wait_for(lambda: element(browser, "#chart-npv canvas"), "its result")
    browser.wait_for(lambda: recorded(browser)["events"][-1] == "workflow.status", "the recorder's last event")
    check_screen(browser, "31-recovered")

    events = recorded(browser)
    assert events["seqs"] == list(range(1, len(events["seqs"]) + 1)), "every event once, in order, none lost"
    assert len(events["seqs"]) > seen_while_down, "what happened while the server was down was replayed"
    assert events["resyncs"] == []
    assert events["states"][:2] == ["connecting", "open"]
    assert "reconnecting" in events["states"]
    assert events["states"][-1] == "open"
    assert browser.remote_requests() == []
    # While the server was down Chrome logged the failed connections; nothing else may be there.
    down = ("ERR_CONNECTION_REFUSED", "WebSocket connection to", "ERR_CONNECTION_RESET", "ERR_EMPTY_RESPONSE")
    assert browser.console_errors(ignore=lambda message: any(sign in message for sign in down)) == []


HOLD_SUBSCRIPTIONS = """
// What a slow network does to the page: its subscriptions to the channels named CHANNEL_PREFIX… reach the server late,
// when the test lets them go. Every other frame goes at once.
window.heldFrames = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (!window.framesReleased && typeof data === "string" && data.includes('"CHANNEL_PREFIX')) {
    window.heldFrames.push(() => send.call(this, data));
    return;
  }
  send.call(this, data);
};
window.releaseFrames = () => {
  window.framesReleased = true;
  for (const go of window.heldFrames.splice(0)) go();
};
"""


def test_a_run_that_ends_before_the_page_is_subscribed_is_shown(restartable: ConsoleService, browser: Browser) -> None:
    """The page reads the workflow (queued), the run ends, and only then does the server subscribe the page: the end
    is in neither the read nor the events that follow, so the page reads again once it is subscribed."""
    driver = browser.driver
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HOLD_SUBSCRIPTIONS.replace("CHANNEL_PREFIX", "workflow:")}
    )
    base = restartable.base_url
    register(browser, base, new_email())
    headers = bearer_headers(browser)
    trivial = {"name": "Ends unseen", "cash_flows": [-100.0, 40.0, 50.0, 60.0], "parameters": {"discount_rate": 0.1}}
    workflow_id = httpx.post(f"{base}/api/workflows", json=trivial, headers=headers).json()["id"]

    assert restartable.worker is not None
    restartable.worker.send_signal(signal.SIGSTOP)  # the run stays queued while the page reads it
    try:
        assert httpx.post(f"{base}/api/workflows/{workflow_id}/run", headers=headers).status_code == 202
        driver.execute_script(f"location.hash = '#/workflows/{workflow_id}'")
        browser.wait_for(lambda: element(browser, "#workflow-status .badge").text == "queued", "the page's read")
        assert driver.execute_script("return window.heldFrames.length") == 1, "its subscription has not gone yet"
    finally:
        restartable.worker.send_signal(signal.SIGCONT)

    def ended() -> bool:
        status = httpx.get(f"{base}/api/workflows/{workflow_id}/status", headers=headers).json()["status"]
        return bool(status == "succeeded")

    browser.wait_for(ended, "the run's end")
    driver.execute_script("window.releaseFrames()")
    browser.wait_for(lambda: element(browser, "#workflow-status .badge").text == "succeeded", "the page shows it", 10)
    browser.wait_for(lambda: element(browser, "#chart-cash-flows canvas"), "with its result")
    assert browser.console_errors() == []


def test_a_workflow_created_before_the_list_is_subscribed_is_listed(
    restartable: ConsoleService, browser: Browser
) -> None:
    """The list is read at sign-in, a workflow is created elsewhere, and only then does the server subscribe the page
    to its user's channel: the list reads its first page again once subscribed."""
    driver = browser.driver
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HOLD_SUBSCRIPTIONS.replace("CHANNEL_PREFIX", "user:")}
    )
    base = restartable.base_url
    register(browser, base, new_email())
    browser.wait_for(
        lambda: element(browser, "p.empty").text == "No workflows yet. Create one to get started.", "the list"
    )
    assert driver.execute_script("return window.heldFrames.length") == 1, "its subscription has not gone yet"
    headers = bearer_headers(browser)
    created = {"name": "Made elsewhere", "cash_flows": [-100.0, 60.0, 60.0], "parameters": {"discount_rate": 0.1}}
    assert httpx.post(f"{base}/api/workflows", json=created, headers=headers).status_code == 201

    driver.execute_script("window.releaseFrames()")
    browser.wait_for(lambda: "Made elsewhere" in element(browser, "#workflow-table").text, "the list shows it", 10)
    assert browser.console_errors() == []
