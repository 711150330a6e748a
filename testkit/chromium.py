"""Headless Chromium driven by Selenium, for the console's and the docs' browser tests and `roi bench`: every
request the page made (from Chrome's performance log), its console messages, screenshots, and axe-core's
accessibility check."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = "Chromium/chromedriver not installed: apt-get install chromium chromium-driver"
NO_SELENIUM = "Selenium not installed: pip install -e '.[dev]'"
ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "web" / "vendor" / "axe-core-4.14.1" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "browser" / "artifacts"
LOCAL_HOSTS = {"127.0.0.1"}
NETWORK_SCHEMES = {"http", "https", "ws", "wss"}
WAIT_S = 30.0

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


def chromium_missing() -> bool:
    return not (CHROMIUM.exists() and CHROMEDRIVER.exists())


def selenium_missing() -> bool:
    return importlib.util.find_spec("selenium") is None


class Browser:
    """One Chromium with a fresh profile; what it logged is read (and kept) as the test goes."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.requests: list[str] = []
        self.console: list[dict[str, Any]] = []

    def collect_logs(self) -> None:
        """Drain Chrome's logs: the URLs the page asked for (HTTP and WebSocket) and its console messages."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.webSocketCreated":
                self.requests.append(message["params"]["url"])
        self.console.extend(self.driver.get_log("browser"))

    def remote_requests(self) -> list[str]:
        """Every network request so far (HTTP, WebSocket) to anywhere but 127.0.0.1; data:, blob: and the browser's own
        chrome:// pages (its new-tab page) are not network."""
        self.collect_logs()
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme in NETWORK_SCHEMES and urlsplit(url).hostname not in LOCAL_HOSTS
        ]

    def console_errors(self, ignore: Callable[[str], bool] = lambda _: False) -> list[str]:
        self.collect_logs()
        return [
            entry["message"] for entry in self.console if entry["level"] == "SEVERE" and not ignore(entry["message"])
        ]

    def wait_for(self, condition: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
        """Poll `condition` until it returns something truthy (stale elements count as not yet)."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = condition()
            except Exception as error:  # noqa: BLE001 - a DOM that is being re-rendered throws; try again
                last_error = error
            else:
                if value:
                    return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_error!r})")

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        """A PNG of the whole page (or only the window) in tests/browser/artifacts/."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if not full_page:
            self.driver.save_screenshot(str(path))
            return path
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def axe_violations(self, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
        """axe-core's violations of the page as it stands, of the given impacts."""
        if not self.driver.execute_script("return typeof window.axe === 'object'"):
            self.driver.execute_script(AXE.read_text(encoding="utf-8"))
        result: dict[str, Any] = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(done, (error) => done({error: String(error)}));"
        )
        assert "error" not in result, result
        return [
            {
                "id": violation["id"],
                "impact": violation["impact"],
                "help": violation["help"],
                "nodes": [node["target"] for node in violation["nodes"]][:5],
            }
            for violation in result["violations"]
            if violation["impact"] in impacts
        ]


@contextmanager
def chromium() -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="roi-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(WAIT_S)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
