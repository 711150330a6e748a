"""The API docs render with no internet: each page shows the API, and no request leaves 127.0.0.1."""

from __future__ import annotations

import pytest

from testkit.chromium import Browser
from tests.browser.service import ConsoleService

pytestmark = pytest.mark.slow

# Text each UI shows without a click: an operation's summary, a path, or a schema's name.
PAGES = {
    "/schema": "Create an account",
    "/schema/swagger": "/api/workflows/{workflow_id}/run",
    "/schema/elements": "WorkflowCreate",
    "/schema/rapidoc": "Create an account",
}
VISIBLE_TEXT = """
const texts = [document.body.innerText];
const visit = (root) => {
  for (const element of root.querySelectorAll("*")) {
    if (element.shadowRoot) { texts.push(element.shadowRoot.textContent); visit(element.shadowRoot); }
  }
};
visit(document);
return texts.join(" ");
"""


@pytest.mark.parametrize("path", list(PAGES))
def test_docs_render_offline(service: ConsoleService, browser: Browser, path: str) -> None:
    browser.driver.get(f"{service.base_url}{path}")
    browser.wait_for(lambda: PAGES[path] in browser.driver.execute_script(VISIBLE_TEXT), f"{path} shows the API")
    browser.screenshot("40-docs" + path.replace("/", "-"), full_page=False)
    assert browser.remote_requests() == []
    assert browser.console_errors() == []
