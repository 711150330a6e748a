"""A ledger upload cut short by a page reload resumes where the server's offset stands once the same file is chosen
again (tus-js-client's fingerprint storage and `findPreviousUploads`): one upload on the server, not two, and its
bytes are the file's."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from testkit.chromium import Browser
from testkit.ledgers import csv_ledger_bytes
from tests.browser.console_support import (
    bearer_headers,
    check_screen,
    element,
    new_email,
    register,
    text_of,
    wait_for_screen,
)
from tests.browser.service import ConsoleService

pytestmark = pytest.mark.slow

UPLOAD_BYTES_PER_S = 400 * 1024


def throttle_uploads(browser: Browser, bytes_per_s: float) -> None:
    browser.driver.execute_cdp_cmd("Network.enable", {})
    browser.driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_s},
    )


def choose_ledger(browser: Browser, path: Path) -> None:
    element(browser, "#new-workflow").click()
    wait_for_screen(browser, "create-title")
    element(browser, "input[name=source][value=ledger]").click()
    element(browser, "#create-ledger").send_keys(str(path))


def upload_progress(browser: Browser) -> float:
    value: float = browser.driver.execute_script("return document.querySelector('#upload-progress').value")
    return value


def test_an_upload_resumes_after_a_reload(service: ConsoleService, browser: Browser, tmp_path: Path) -> None:
    data, sums = csv_ledger_bytes(90_000, periods=36)  # about 3 MB
    ledger = tmp_path / "ledger.csv"
    ledger.write_bytes(data + b"2020-01-01,1000,0,-1.00,capex\n")
    register(browser, service.base_url, new_email())
    headers = bearer_headers(browser)

    throttle_uploads(browser, UPLOAD_BYTES_PER_S)
    choose_ledger(browser, ledger)
    browser.wait_for(lambda: upload_progress(browser) > 0.3, "a third of the upload")
    browser.driver.refresh()
    wait_for_screen(browser, "create-title")  # the same screen: the route is in the URL

    (upload,) = httpx.get(f"{service.base_url}/api/uploads", headers=headers).json()["items"]
    assert upload["status"] == "uploading"
    assert 0 < upload["offset"] < len(ledger.read_bytes()), upload

    throttle_uploads(browser, -1)
    element(browser, "input[name=source][value=ledger]").click()
    browser.wait_for(lambda: "Choose the same file to resume" in text_of(browser, "#unfinished-uploads"), "the hint")
    assert "ledger.csv" in text_of(browser, "#unfinished-uploads")
    check_screen(browser, "20-upload-unfinished")
    element(browser, "#create-ledger").send_keys(str(ledger))
    browser.wait_for(lambda: text_of(browser, "#upload-status").startswith("Ready"), "the resumed upload is ready", 60)

    uploads = httpx.get(f"{service.base_url}/api/uploads", headers=headers).json()["items"]
    assert [item["id"] for item in uploads] == [upload["id"]], "resumed, not started again"
    content = httpx.get(f"{service.base_url}/api/uploads/{upload['id']}/content", headers=headers)
    assert content.content == ledger.read_bytes()
    assert uploads[0]["periods"] == len(sums)
    assert browser.driver.execute_script("return Object.keys(localStorage).filter((k) => k.startsWith('tus::'))") == []
    assert browser.remote_requests() == []
    assert browser.console_errors() == []
