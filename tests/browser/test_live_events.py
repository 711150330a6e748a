"""web/live-events.js in the browser: first against a scripted WebSocket (every frame and close code the protocol
has, deterministic), then against the real server (heartbeat answered, forbidden channel, refused token, a token
that expires on an open socket)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from infra.settings import Settings
from testkit.chromium import Browser
from tests.browser.console_support import element, new_email, register, text_of, wait_for_screen
from tests.browser.service import ConsoleService
from tests.integration.ws_support import token_for

pytestmark = pytest.mark.slow

FAKE_SOCKET = """
class FakeSocket {
  static OPEN = 1;
  static instances = [];
  constructor(url) {
    this.url = String(url);
    this.sent = [];
    this.readyState = 0;
    this.closedWith = null;
    FakeSocket.instances.push(this);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code) { this.readyState = 3; this.closedWith = code ?? 1005; }
  welcome(heartbeat_s = 20) {
    this.readyState = 1;
    this.receive({type: "welcome", heartbeat_s, connection_id: "fake"});
  }
  receive(frame) { this.onmessage?.({data: JSON.stringify(frame)}); }
  drop(code, reason = "") { this.readyState = 3; this.onclose?.({code, reason}); }
}
window.WebSocket = FakeSocket;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const event = (seq, channel = "workflow:a") =>
  ({type: "event", channel, seq, event: "workflow.status", data: {status: "running"}, ts: "2026-12-06T00:00:00Z"});
const { LiveEvents, State } = await import("/console/live-events.js");
"""


def scripted(browser: Browser, body: str) -> Any:
    """Run `body` (an async function body that returns a value) with the module and a scripted WebSocket."""
    script = (
        "const done = arguments[arguments.length - 1];"
        f"(async () => {{ {FAKE_SOCKET} {body} }})().then(done, (error) => done({{error: String(error.stack)}}));"
    )
    result = browser.driver.execute_async_script(script)
    assert not (isinstance(result, dict) and "error" in result), result
    return result


@pytest.fixture
def page(service: ConsoleService, browser: Browser) -> Browser:
    """Any console page: it brings the import map through which the module is imported."""
    browser.driver.get(f"{service.base_url}/")
    wait_for_screen(browser, "sign-in-title")
    return browser


def test_resubscribes_with_since_dedupes_and_reports_what_was_lost(page: Browser) -> None:
    result = scripted(
        page,
        """
        const log = {events: [], resyncs: [], states: [], refused: []};
        const live = new LiveEvents({
          token: () => "t0ken", initialDelayMs: 10, maxDelayMs: 20,
          onStateChange: (state) => log.states.push(state), onUnauthorized: (reason) => log.refused.push(reason),
        });
        live.subscribe("workflow:a", {
          onEvent: (frame) => log.events.push(frame.seq),
          onResync: (channel, {reason}) => log.resyncs.push(reason),
        });
        live.connect();
        const first = FakeSocket.instances[0];
        first.welcome();
        first.receive({type: "subscribed", channel: "workflow:a", seq: 3, recovered: true});
        first.receive(event(4)); first.receive(event(4)); first.receive(event(5));
        first.receive({type: "ping"});
        first.drop(1001, "server shutting down: reconnect with since");
        await sleep(80);
        const second = FakeSocket.instances[1];
        second.welcome();
        second.receive({type: "subscribed", channel: "workflow:a", seq: 7, recovered: true});
        second.receive(event(5)); second.receive(event(6)); second.receive(event(7)); second.receive(event(9));
        second.drop(1012);
        await sleep(80);
        const third = FakeSocket.instances[2];
        third.welcome();
        third.receive({type: "subscribed", channel: "workflow:a", seq: 20, recovered: false});
        third.receive(event(21));
        third.drop(4401, "token expired");
        await sleep(100);
        return {log, sent: FakeSocket.instances.map((socket) => socket.sent),
                urls: FakeSocket.instances.map((socket) => socket.url), lastSeq: live.lastSeq("workflow:a")};
        """,
    )
    assert result["log"]["events"] == [4, 5, 6, 7, 9, 21], "each event once, in order"
    assert result["log"]["resyncs"] == ["gap", "history"]
    assert result["sent"] == [
        [{"op": "subscribe", "channel": "workflow:a"}, {"op": "pong"}],
        [{"op": "subscribe", "channel": "workflow:a", "since": 5}],
        [{"op": "subscribe", "channel": "workflow:a", "since": 9}],
    ]
    assert all(url.startswith("ws://127.0.0.1:") and "/ws?token=t0ken" in url for url in result["urls"])
    assert result["log"]["refused"] == ["token expired"]
    assert result["log"]["states"][-1] == "unauthorized"
    assert len(result["urls"]) == 3, "no reconnect after 4401"
    assert result["lastSeq"] == 21


def test_backs_off_with_jitter_and_asks_about_the_token_when_refused_before_the_welcome(page: Browser) -> None:
    result = scripted(
        page,
        """
        const delays = [];
        let valid = null;
        const live = new LiveEvents({
          token: "t", initialDelayMs: 40, maxDelayMs: 160,
          checkToken: async () => valid,
          onStateChange: (state, detail) => { if (detail.delayMs !== undefined) delays.push(detail.delayMs); },
        });
        live.connect();
        for (let attempt = 0; attempt < 5; attempt += 1) {
          const count = FakeSocket.instances.length;
          FakeSocket.instances[count - 1].drop(1006);
          while (FakeSocket.instances.length === count) await sleep(5);
        }
        valid = false;
        FakeSocket.instances[FakeSocket.instances.length - 1].drop(1006);
        await sleep(400);
        return {delays, sockets: FakeSocket.instances.length, state: live.state};
        """,
    )
    steps = [40, 80, 160, 160, 160]
    assert len(result["delays"]) == 5
    for delay, step in zip(result["delays"], steps, strict=True):
        assert step / 2 <= delay <= step, result["delays"]
    assert result["state"] == "unauthorized", "a token the API refuses ends the retries"
    assert result["sockets"] == 6


def test_drops_a_silent_socket_and_handles_error_frames(page: Browser) -> None:
    result = scripted(
        page,
        """
        const errors = [];
        const live = new LiveEvents({token: "t", initialDelayMs: 10, maxDelayMs: 10});
        live.subscribe("workflow:gone", {onError: (frame) => errors.push(frame.code)});
        live.subscribe("upload:busy", () => {});
        live.connect();
        const first = FakeSocket.instances[0];
        first.welcome(0.05);
        first.receive({type: "error", code: "forbidden", channel: "workflow:gone", detail: "not yours"});
        first.receive({type: "error", code: "unavailable", channel: "upload:busy", detail: "retry"});
        await sleep(400);  // silent for more than 2.5 heartbeats of 50 ms: dropped, replaced
        const second = FakeSocket.instances[1];
        second.welcome();
        await sleep(20);
        return {errors, firstSent: first.sent, firstClosed: first.closedWith, secondSent: second.sent};
        """,
    )
    assert result["errors"] == ["forbidden"]
    assert result["firstClosed"] == 4000
    subscribes = [frame["channel"] for frame in result["firstSent"] if frame["op"] == "subscribe"]
    assert subscribes.count("upload:busy") == 2, "an unavailable subscription is asked again"
    assert result["secondSent"] == [{"op": "subscribe", "channel": "upload:busy"}], "forbidden is not asked again"


def watch_connection(browser: Browser) -> None:
    """Count the sockets the page opens from now on."""
    browser.driver.execute_script(
        "window.socketsOpened = 0; const Native = window.WebSocket;"
        "window.WebSocket = class extends Native {"
        "  constructor(...args) { super(...args); window.socketsOpened += 1; }"
        "};"
    )


def test_answers_the_heartbeat_and_refuses_nothing_of_its_own(service: ConsoleService, browser: Browser) -> None:
    """The test server pings every second and closes a socket after two unanswered pings: a page that stays
    connected for several seconds on one socket is answering them."""
    register(browser, service.base_url, new_email())
    states = browser.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import("/console/live-events.js").then(({LiveEvents}) => {
          const states = [];
          const live = new LiveEvents({token: () => sessionStorage.getItem("roi.token"),
                                      onStateChange: (state) => states.push(state)});
          const errors = [];
          live.subscribe(`workflow:${crypto.randomUUID()}`, {onError: (frame) => errors.push(frame.code)});
          live.connect();
          setTimeout(() => { live.close(); done({states, errors}); }, 5000);
        });
        """
    )
    assert states == {"states": ["connecting", "open", "closed"], "errors": ["forbidden"]}
    assert element(browser, "#connection").get_attribute("data-state") == "open"
    assert browser.console_errors() == []


def test_a_token_that_expires_on_an_open_socket_signs_the_person_out(
    service: ConsoleService, browser: Browser, settings: Settings
) -> None:
    register(browser, service.base_url, new_email())
    user_id = browser.driver.execute_script(
        "return fetch('/api/me', {headers: {Authorization: `Bearer ${sessionStorage.getItem('roi.token')}`}})"
        ".then((answer) => answer.json()).then((me) => me.id)"
    )
    short_lived = token_for(settings, user_id, 4)
    browser.driver.execute_script(f"sessionStorage.setItem('roi.token', '{short_lived}')")
    browser.driver.refresh()
    wait_for_screen(browser, "workflows-title")
    browser.wait_for(lambda: element(browser, "#connection").get_attribute("data-state") == "open", "live updates")
    watch_connection(browser)
    wait_for_screen(browser, "sign-in-title")  # the server closes with 4401 when the token expires
    assert "session has ended" in text_of(browser, "#auth-message")
    assert '"close_code":4401' in service.log.read_text(), "signed out by the socket's 4401, not by an HTTP 401"
    time.sleep(1.5)
    assert browser.driver.execute_script("return window.socketsOpened") == 0, "no reconnect with a refused token"
    assert browser.driver.execute_script("return sessionStorage.getItem('roi.token')") is None


def test_a_refused_token_at_load_asks_to_sign_in_again(service: ConsoleService, browser: Browser) -> None:
    browser.driver.get(f"{service.base_url}/")
    wait_for_screen(browser, "sign-in-title")
    browser.driver.execute_script(f"sessionStorage.setItem('roi.token', 'not-a-token-{uuid.uuid4().hex}')")
    browser.driver.get(f"{service.base_url}/#/workflows")
    browser.driver.refresh()
    wait_for_screen(browser, "sign-in-title")
    assert "session has ended" in text_of(browser, "#auth-message")
    refused = [message for message in browser.console_errors() if "401" not in message]
    assert refused == []


def test_the_server_refuses_a_bad_token_with_4401_and_the_module_stops(page: Browser) -> None:
    result = page.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import("/console/live-events.js").then(({LiveEvents}) => {
          const states = [];
          const live = new LiveEvents({token: "not-a-token", onStateChange: (state) => states.push(state),
                                      onUnauthorized: (reason) => setTimeout(() => done({states, reason}), 1500)});
          live.connect();
        });
        """
    )
    assert result["states"] == ["connecting", "unauthorized"], "no reconnect"
    assert result["reason"]
    assert page.console_errors() == []
