"""Browser tests: headless Chromium (Selenium) against a real Granian and a real `roi worker`, on the integration
suite's fresh database and Redis namespace. Skipped, saying how to install them, when Chromium or chromedriver is
missing. Screenshots go to tests/browser/artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings
from testkit.chromium import ARTIFACTS, MISSING, Browser, chromium, chromium_missing
from tests.browser.service import ConsoleService
from tests.integration.conftest import _isolated, database_url, db, service_urls, settings

__all__ = ["_isolated", "database_url", "db", "service_urls", "settings"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if chromium_missing():
        skip = pytest.mark.skip(reason=MISSING)
        for item in items:
            if "tests/browser/" in str(item.path).replace("\\", "/"):
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _artifacts_folder() -> Iterator[None]:
    yield
    if ARTIFACTS.exists():
        print(f"\nbrowser test screenshots and measurements: {ARTIFACTS}")


@pytest.fixture(scope="module")
def service(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleService]:
    """One server and worker for a module's tests."""
    running = ConsoleService(settings, Path(tmp_path_factory.mktemp("console")))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened
