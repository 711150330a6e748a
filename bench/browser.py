"""The console in headless Chromium (Debian's `chromium` and `chromedriver`, driven by Selenium) against the bench's
Granian, in three rows:

- `browser_cold_load`: the sign-in screen loaded with an empty cache (cleared through the DevTools protocol before
  each load); its latencies are the console's own `console-interactive` mark (ms after navigation start), and the
  bytes on the wire (Performance API `transferSize`, also `encodedBodySize`, of the document and every resource)
  go to the notes with their verdict against 150 KB;
- `browser_status_visible`: a signed-in list of workflows; this process runs and cancels them through the API
  (each call publishes `workflow.status` on the user's channel) and the page records, with a MutationObserver on
  the list's rows, `performance.timeOrigin + performance.now()` when the row's status badge shows the new status.
  The latency is that time minus the event's `ts` (the server's publish time, read from the very WebSocket frame
  the page received, by a listener added to the page's sockets): the same machine clock on both sides;
- `browser_ledger_ready`: a 10 MB CSV ledger set on the create screen's file input (as a file picker does) →
  the page says `Ready`, with one `roi worker` process parsing; a trailing line makes each file distinct, so the
  tus client never resumes an earlier upload.

Every figure includes the browser's and this process's scheduling on cores shared with the server.
"""

from __future__ import annotations

import datetime
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
import httpx
import msgspec

from bench.report import Round, ScenarioResult, percentile, pooled_result
from bench.scenarios import BROWSER_ROWS, COLD_LOAD_MAX_BYTES
from bench.service import BenchFailed, expect
from bench.workers import WorkerProcesses, forget_queue
from infra.queue import create_queue
from testkit.chromium import MISSING, NO_SELENIUM, Browser, chromium, chromium_missing, selenium_missing
from testkit.console import PASSWORD, element, load_measurement, new_email, register, text_of, wait_for_screen
from testkit.factories import WorkflowCreateFactory
from testkit.granian import Server
from testkit.ledgers import csv_ledger_bytes

COLD_LOADS, QUICK_COLD_LOADS = 20, 10
STATUS_CHANGES, QUICK_STATUS_CHANGES = 100, 50
READY_LEDGERS, QUICK_READY_LEDGERS = 8, 5
LIST_WORKFLOWS = 10
LEDGER_ROWS = 300_000
"""About 10 MB (testkit.ledgers)."""
SAMPLE_WAIT_S = 10.0
READY_WAIT_S = 60.0

WATCH_SOCKETS = """
const Native = window.WebSocket;
window.__statusFrames = [];
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (message) => {
      try {
        const frame = JSON.parse(message.data);
        if (frame.type === "event" && frame.event === "workflow.status") {
          window.__statusFrames.push([frame.data.id, frame.data.status, frame.ts]);
        }
      } catch {}
    });
  }
};
"""
"""Run before the page's own scripts: every `workflow.status` frame the page receives, with the server's `ts`."""

WATCH_STATUSES = """
window.__statusSeen = [];
const shown = new Map();
const rows = () => document.querySelectorAll("#workflow-table tr[data-id]");
new MutationObserver(() => {
  const at = performance.timeOrigin + performance.now();
  for (const row of rows()) {
    const text = row.querySelector(".status-cell")?.textContent.trim();
    if (text && shown.get(row.dataset.id) !== text) {
      shown.set(row.dataset.id, text);
      window.__statusSeen.push([row.dataset.id, text, at]);
    }
  }
}).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
for (const row of rows()) {
  shown.set(row.dataset.id, row.querySelector(".status-cell")?.textContent.trim());
}
"""
"""The time a row's status badge first shows a new text (a row may be replaced whole, so every row is read on each
change); the rows as they stand are the baseline."""

WATCH_READY = """
window.__readyAt = null;
const status = document.querySelector("#upload-status");
new MutationObserver(() => {
  if (window.__readyAt === null && status.textContent.startsWith("Ready")) {
    window.__readyAt = performance.timeOrigin + performance.now();
  }
}).observe(status, {subtree: true, childList: true, characterData: true});
"""


async def measure_browser(
    server: Server, environment: dict[str, str], rounds: int, quick: bool, floor: ScenarioResult
) -> tuple[list[ScenarioResult], list[str]]:
    """The three rows, each sample pooled over `rounds` rounds; without Chromium, no row and a note saying why."""
    missing = MISSING if chromium_missing() else NO_SELENIUM if selenium_missing() else None
    if missing:
        click.echo(f"roi bench: browser skipped: {missing}", err=True)
        return [], [f"browser: skipped: {missing}"]
    cold_loads = _per_round(QUICK_COLD_LOADS if quick else COLD_LOADS, rounds)
    changes = _per_round(QUICK_STATUS_CHANGES if quick else STATUS_CHANGES, rounds)
    ledgers = _per_round(QUICK_READY_LEDGERS if quick else READY_LEDGERS, rounds)
    samples: dict[str, list[Round]] = {name: [] for name in BROWSER_ROWS}
    transfer: list[float] = []
    encoded: list[float] = []
    queue = create_queue(environment["REDIS_URL"], environment["REDIS_NAMESPACE"])
    try:
        with tempfile.TemporaryDirectory(prefix="roi-bench-browser-") as work_dir:
            work = Path(work_dir)
            workers = WorkerProcesses(environment, work / "workers.log", queue)
            for round_number in range(1, rounds + 1):
                with chromium() as browser:
                    phase = _timed(server, lambda: _cold_loads(browser, server, cold_loads, transfer, encoded))
                    samples[BROWSER_ROWS[0]].append(phase)
                    _echo(round_number, rounds, BROWSER_ROWS[0], phase)
                with chromium() as browser:
                    browser.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_SOCKETS})
                    email = new_email()
                    register(browser, server.base_url, email)
                    token = _sign_in(server.base_url, email)
                    phase = await _status_changes(browser, server, token, changes)
                    samples[BROWSER_ROWS[1]].append(phase)
                    _echo(round_number, rounds, BROWSER_ROWS[1], phase)
                    with workers.running(1):
                        await workers.ready(1)
                        phase = _ledgers_ready(browser, server, work, ledgers, round_number)
                    samples[BROWSER_ROWS[2]].append(phase)
                    _echo(round_number, rounds, BROWSER_ROWS[2], phase)
    finally:
        await forget_queue(queue)
    results = [pooled_result(name, "deployed", _REQUESTS[name], samples[name], floor) for name in BROWSER_ROWS]
    return results, _notes(transfer, encoded)


_REQUESTS = {
    BROWSER_ROWS[0]: "GET / in Chromium, empty cache -> console-interactive mark",
    BROWSER_ROWS[1]: "POST run|cancel -> workflow.status ts -> status badge shown in the list",
    BROWSER_ROWS[2]: "10 MB CSV on the file input -> tus upload -> roi worker parse -> 'Ready' shown",
}


def _per_round(total: int, rounds: int) -> int:
    return -(-total // rounds)


def _echo(round_number: int, rounds: int, name: str, phase: Round) -> None:
    ordered = sorted(phase.latencies_ms)
    click.echo(
        f"round {round_number}/{rounds} {name}: {len(ordered)} samples, p50 {percentile(ordered, 0.5):.1f} ms, "
        f"p95 {percentile(ordered, 0.95):.1f} ms, {phase.errors} errors",
        err=True,
    )


def _timed(server: Server, sample: Any) -> Round:
    """Run `sample()` (latencies in ms, errors) and account for the elapsed time and the CPU of both sides."""
    started, client_cpu, server_cpu = time.perf_counter(), time.process_time(), server.cpu_s()
    latencies_ms, errors = sample()
    return Round(
        latencies_ms=latencies_ms,
        rated=len(latencies_ms),
        served=len(latencies_ms),
        errors=errors,
        elapsed_s=time.perf_counter() - started,
        client_cpu_s=time.process_time() - client_cpu,
        server_cpu_s=server.cpu_s() - server_cpu,
    )


def _cold_loads(
    browser: Browser, server: Server, loads: int, transfer: list[float], encoded: list[float]
) -> tuple[list[float], int]:
    driver = browser.driver
    driver.execute_cdp_cmd("Network.enable", {})
    latencies_ms: list[float] = []
    errors = 0
    for _ in range(loads):
        driver.get("about:blank")
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        driver.get(f"{server.base_url}/")
        wait_for_screen(browser, "sign-in-title")
        measured = load_measurement(browser)
        if measured["console_interactive_ms"] is None:
            errors += 1
            continue
        latencies_ms.append(float(measured["console_interactive_ms"]))
        transfer.append(float(measured["transfer_bytes"]))
        encoded.append(float(measured["compressed_body_bytes"]))
    return latencies_ms, errors


def _sign_in(base_url: str, email: str) -> str:
    answer = httpx.post(f"{base_url}/api/auth/login", json={"email": email, "password": PASSWORD}, timeout=30.0)
    token: str = msgspec.json.decode(expect(answer, 200, "browser: sign in"))["access_token"]
    return token


async def _status_changes(browser: Browser, server: Server, token: str, changes: int) -> Round:
    """LIST_WORKFLOWS drafts in the list; each change runs (→ queued) or cancels (→ cancelled) the next one. No
    worker runs meanwhile, so nothing but these calls changes a status."""
    driver = browser.driver
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30.0) as api:
        ids: list[str] = []
        for _ in range(LIST_WORKFLOWS):
            body = WorkflowCreateFactory.build()
            answer = await api.post("/api/workflows", content=_json(body), headers={"Content-Type": "application/json"})
            ids.append(msgspec.json.decode(expect(answer, 201, "browser: create"))["id"])
        driver.refresh()
        wait_for_screen(browser, "workflows-title")
        browser.wait_for(
            lambda: len(driver.find_elements("css selector", "#workflow-table tr[data-id]")) >= LIST_WORKFLOWS,
            "the list of workflows",
        )
        browser.wait_for(lambda: element(browser, "#connection").get_attribute("data-state") == "open", "live")
        driver.execute_script(WATCH_STATUSES)
        status = dict.fromkeys(ids, "draft")
        latencies_ms: list[float] = []
        errors = 0
        started, client_cpu, server_cpu = time.perf_counter(), time.process_time(), server.cpu_s()
        for change in range(changes):
            workflow_id = ids[change % len(ids)]
            action, new = ("cancel", "cancelled") if status[workflow_id] == "queued" else ("run", "queued")
            expect(await api.post(f"/api/workflows/{workflow_id}/{action}"), 202, f"browser: {action}")
            status[workflow_id] = new
            latency = _wait_shown(browser, workflow_id, new)
            if latency is None:
                errors += 1
            else:
                latencies_ms.append(latency)
        elapsed = time.perf_counter() - started
    return Round(
        latencies_ms=latencies_ms,
        rated=len(latencies_ms),
        served=len(latencies_ms),
        errors=errors,
        elapsed_s=elapsed,
        client_cpu_s=time.process_time() - client_cpu,
        server_cpu_s=server.cpu_s() - server_cpu,
    )


def _json(body: Any) -> bytes:
    return msgspec.json.encode(body)


def _wait_shown(browser: Browser, workflow_id: str, status: str) -> float | None:
    """ms from the frame's `ts` to the badge showing `status`; None (an error) when either never comes."""
    script = """
    const [id, status] = arguments;
    const frame = window.__statusFrames.findLast((f) => f[0] === id && f[1] === status);
    const seen = window.__statusSeen.findLast((s) => s[0] === id && s[1] === status);
    return frame && seen ? [frame[2], seen[2]] : null;
    """
    try:
        ts, seen_ms = browser.wait_for(
            lambda: browser.driver.execute_script(script, workflow_id, status),
            f"{status} of {workflow_id} on the page",
            SAMPLE_WAIT_S,
        )
    except AssertionError as error:
        seen = browser.driver.execute_script("return [window.__statusFrames, window.__statusSeen]")
        click.echo(f"browser_status_visible: {error}; frames and changes seen: {seen}", err=True)
        return None
    published_ms = datetime.datetime.fromisoformat(ts).timestamp() * 1000
    browser.driver.execute_script(
        "window.__statusFrames = []; window.__statusSeen = window.__statusSeen.filter((s) => s[0] !== arguments[0]);",
        workflow_id,
    )
    return float(seen_ms) - published_ms


def _ledgers_ready(browser: Browser, server: Server, work: Path, ledgers: int, round_number: int) -> Round:
    return _timed(server, lambda: _ready_samples(browser, server, work, ledgers, round_number))


def _ready_samples(
    browser: Browser, server: Server, work: Path, ledgers: int, round_number: int
) -> tuple[list[float], int]:
    driver = browser.driver
    data, _ = csv_ledger_bytes(LEDGER_ROWS)
    latencies_ms: list[float] = []
    errors = 0
    for number in range(ledgers):
        path = work / f"ledger-{round_number}-{number}.csv"
        path.write_bytes(data + f"2020-01-01,1000,0,-{round_number}.{number:02d},{uuid.uuid4().hex}\n".encode())
        driver.get(f"{server.base_url}/#/")
        wait_for_screen(browser, "workflows-title")
        element(browser, "#new-workflow").click()
        wait_for_screen(browser, "create-title")
        element(browser, "input[name=source][value=ledger]").click()
        driver.execute_script(WATCH_READY)
        chosen_ms = time.time() * 1000
        element(browser, "#create-ledger").send_keys(str(path))
        try:
            ready_ms = browser.wait_for(
                lambda: driver.execute_script("return window.__readyAt"), "the ledger is ready", READY_WAIT_S
            )
        except AssertionError as error:
            click.echo(f"browser_ledger_ready: {error}; the page says {text_of(browser, '#upload-status')!r}", err=True)
            errors += 1
        else:
            latencies_ms.append(float(ready_ms) - chosen_ms)
        path.unlink()
    return latencies_ms, errors


def _notes(transfer: list[float], encoded: list[float]) -> list[str]:
    if not transfer:
        raise BenchFailed("browser: no cold load measured; see the server's log")
    ordered, bodies = sorted(transfer), sorted(encoded)
    p95 = percentile(ordered, 0.95)
    verdict = "PASS" if p95 <= COLD_LOAD_MAX_BYTES else "FAIL"
    return [
        f"browser cold load, {len(ordered)} loads: {percentile(ordered, 0.5) / 1024:.1f} KB p50, {p95 / 1024:.1f} KB "
        f"p95 transferred (compressed bodies {percentile(bodies, 0.5) / 1024:.1f} KB p50); "
        f"#15 <= {COLD_LOAD_MAX_BYTES // 1024} KB: {verdict}"
    ]
