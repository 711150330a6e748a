"""Past API_MAX_IN_FLIGHT requests in one process, the next ones are refused at once with 503 and Retry-After."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from tests.integration.test_end_to_end import sign_up
from tests.integration.ws_support import LiveServer, live_server

MAX_IN_FLIGHT = 2
EXCESS = 20
ANSWER_DEADLINE_S = 10.0
LEDGER = b"period,cash_flow\n0,-100\n1,60\n2,60\n"


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(settings, tmp_path, workers=1, API_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT), API_RETRY_AFTER_S="3") as up:
        yield up


class HeldRequest:
    """A request whose body is sent only in part: it stays in flight until `finish()` sends the rest.

    It asks `Expect: 100-continue` and waits for the `100 Continue` that the server sends once the app reads the body:
    from then on, the request is known to be admitted and in flight.
    """

    def __init__(self, server: LiveServer, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        self.socket = socket.create_connection((server.server.host, server.server.port), timeout=ANSWER_DEADLINE_S)
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {server.server.address}",
            "Expect: 100-continue",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self.socket.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        continued = self.socket.recv(4096)
        assert continued.startswith(b"HTTP/1.1 100 Continue"), "the app reads the body of an admitted request"
        self.socket.sendall(body[:5])

    def finish(self) -> int:
        """The rest of the body; the status the server answers."""
        self.socket.sendall(self.body[5:])
        status_line = self.socket.recv(4096).split(b"\r\n", 1)[0]
        self.socket.close()
        return int(status_line.split()[1])


def held_upload(server: LiveServer, location: str, headers: dict[str, str]) -> HeldRequest:
    tus = {"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    return HeldRequest(server, "PATCH", location, LEDGER, {**tus, **headers})


def held_create(server: LiveServer, headers: dict[str, str]) -> HeldRequest:
    body = json.dumps({"name": "Held", "cash_flows": [-100, 60, 60], "parameters": {"discount_rate": 0.1}}).encode()
    return HeldRequest(server, "POST", "/api/workflows", body, {"Content-Type": "application/json", **headers})


@pytest.mark.slow
def test_requests_past_the_limit_are_refused_at_once_and_admitted_again_when_it_frees(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=ANSWER_DEADLINE_S) as http:
        alice = sign_up(http, "alice@example.com")
        locations = []
        for _ in range(MAX_IN_FLIGHT):
            created = http.post(
                "/api/uploads", headers={**alice, "Tus-Resumable": "1.0.0", "Upload-Length": str(len(LEDGER))}
            )
            assert created.status_code == 201, created.text
            locations.append(created.headers["location"])
        uploads = [held_upload(server, location, alice) for location in locations]
        assert http.get("/api/me", headers=alice).status_code == 200, "slow uploads hold no slot of the limit"
        held = [held_create(server, alice) for _ in range(MAX_IN_FLIGHT)]

        refused = http.get("/api/me", headers=alice)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert "at capacity" in refused.json()["detail"]

        def get_me() -> httpx.Response:
            return http.get("/api/me", headers=alice)

        with ThreadPoolExecutor(EXCESS) as pool:
            answers = list(pool.map(lambda _: get_me(), range(EXCESS)))  # none hangs: a timeout would raise
        assert {answer.status_code for answer in answers} == {503}
        assert all(answer.headers["retry-after"] == "3" for answer in answers)
        # Each refusal is the same small answer: none carries the headers added to the ones before it.
        assert {len(answer.headers.raw) for answer in [refused, *answers]} == {len(refused.headers.raw)}
        assert all(answer.headers.get_list("x-content-type-options") == ["nosniff"] for answer in answers)

        # A load balancer still sees the process alive and ready while it refuses work.
        assert http.get("/health").status_code == 200
        assert http.get("/ready").status_code == 200

        assert [request.finish() for request in held] == [201] * MAX_IN_FLIGHT, "the admitted requests completed"
        assert [upload.finish() for upload in uploads] == [204] * MAX_IN_FLIGHT
        assert get_me().status_code == 200, "once the held requests ended, requests are admitted again"
