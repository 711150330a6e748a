"""One user's whole story over real HTTP: Granian with two workers, a job worker process, real PostgreSQL and Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.integration.jobs_support import worker_process
from tests.integration.ws_support import LiveServer, live_server

DEADLINE_S = 30.0


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(settings, tmp_path) as running:
        yield running


def sign_up(http: httpx.Client, email: str) -> dict[str, str]:
    account = {"email": email, "password": "a long enough password", "name": email.split("@")[0]}
    assert http.post("/api/auth/register", json=account).status_code == 201
    login = http.post("/api/auth/login", json={"email": email, "password": account["password"]})
    assert login.status_code == 200
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def wait_for_status(http: httpx.Client, path: str, headers: dict[str, str], status: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        body: dict[str, Any] = http.get(f"{path}/status", headers=headers).json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, f"still {body['status']} after {DEADLINE_S}s"
        time.sleep(0.02)  # polling a remote status: there is no event to wait on


@pytest.mark.slow
def test_a_users_whole_story(server: LiveServer, settings: Settings) -> None:
    jobs = worker_process(settings)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            alice = sign_up(http, "alice@example.com")
            bob = sign_up(http, "bob@example.com")
            assert http.get("/api/me", headers=alice).json()["email"] == "alice@example.com"

            body = {
                "name": "New warehouse",
                "cash_flows": [-1000, 300, 400, 500],
                "parameters": {"discount_rate": 0.08, "simulations": 1000, "volatility": 0.1, "seed": 7},
                "priority": "high",
            }
            created = http.post("/api/workflows", json=body, headers=alice)
            assert created.status_code == 201
            workflow = created.json()
            path = f"/api/workflows/{workflow['id']}"

            listed = http.get("/api/workflows", headers=alice).json()
            assert [item["id"] for item in listed["items"]] == [workflow["id"]]
            assert http.get(path, headers=alice).json()["steps"][3]["kind"] == "simulate"
            assert http.get(f"{path}/status", headers=alice).json()["status"] == "draft"
            renamed = http.patch(path, json={"name": "Warehouse B"}, headers=alice)
            assert renamed.json()["name"] == "Warehouse B"

            assert http.post(f"{path}/run", headers=alice).status_code == 202
            wait_for_status(http, path, alice, "succeeded")
            result = http.get(f"{path}/result", headers=alice).json()
            assert result["metrics"]["payback_period"] == pytest.approx(2.6)
            assert result["simulation"]["runs"] == 1000

            for response in (
                http.get(path, headers=bob),
                http.get(f"{path}/status", headers=bob),
                http.get(f"{path}/result", headers=bob),
                http.patch(path, json={"name": "mine now"}, headers=bob),
                http.post(f"{path}/run", headers=bob),
                http.delete(path, headers=bob),
            ):
                assert response.status_code == 404
            assert http.get("/api/workflows", headers=bob).json()["total"] == 0
            assert http.get(path, headers=alice).json()["name"] == "Warehouse B", "bob changed nothing"

            assert http.delete(path, headers=alice).status_code == 204
            assert http.get(path, headers=alice).status_code == 404
            assert http.get("/api/workflows", headers=alice).json()["total"] == 0
    finally:
        jobs.terminate()
        jobs.wait(timeout=20)
