"""The request observer on a bare Litestar app: server errors and WebSocket connections are logged once."""

from __future__ import annotations

import logging

import pytest
from litestar import Litestar, WebSocket, get, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from app.logs import log_server_error
from app.metrics import REQUESTS
from app.request_log import RequestObserverMiddleware
from tests.log_capture import access_line, json_lines


@get("/boom")
async def boom() -> None:
    raise RuntimeError("kaboom")


@websocket("/echo")
async def echo(socket: WebSocket) -> None:  # type: ignore[type-arg]
    await socket.accept()
    await socket.send_text(await socket.receive_text())
    await socket.close(code=4000)


@websocket("/refuse")
async def refuse(socket: WebSocket) -> None:  # type: ignore[type-arg]
    await socket.close(code=4401)


@pytest.fixture
def client() -> TestClient[Litestar]:
    app = Litestar([boom, echo, refuse], after_exception=[log_server_error], logging_config=None)
    app.asgi_handler = RequestObserverMiddleware(app.asgi_handler)
    return TestClient(app)


def test_a_server_error_logs_its_traceback_and_one_access_line(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with client:
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    lines = json_lines(caplog)
    assert access_line(lines, "boom-1")["status"] == 500
    [error] = [line for line in lines if line["logger"] == "roi.errors"]
    assert error["request_id"] == "boom-1"
    assert error["route"] == "/boom"
    assert "RuntimeError: kaboom" in error["exc"]


def test_a_websocket_connection_is_logged_once_when_it_ends(
    client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Outside `with client:` each session has its own event loop, which ends only when the handler has returned.
    with client.websocket_connect("/echo", headers={"X-Request-ID": "ws-1"}) as socket:
        socket.send_text("hello")
        assert socket.receive_text() == "hello"
        with pytest.raises(WebSocketDisconnect):
            socket.receive_text()
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/refuse", headers={"X-Request-ID": "ws-2"}):
        pass
    lines = json_lines(caplog)
    accepted = access_line(lines, "ws-1")
    assert (accepted["method"], accepted["route"], accepted["status"], accepted["close_code"]) == (
        "WEBSOCKET",
        "/echo",
        101,
        4000,
    )
    refused = access_line(lines, "ws-2")
    assert (refused["status"], refused["close_code"]) == (403, 4401)
    counted_paths = {sample.labels["path"] for metric in REQUESTS.collect() for sample in metric.samples}
    assert "/echo" not in counted_paths, "a connection's lifetime is not a request duration"
