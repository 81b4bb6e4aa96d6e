"""Bad input to pymongoose.asgi: malformed requests, vanishing clients, failing apps.

Each case must end in the right status or a clean close, be logged once at most, and
leave the server serving.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import pytest
import requests
import websocket
from asgi_helpers import TIMEOUT, raw_request, running_asgi


class App:
    """HTTP: answers "ok". WebSocket: behaviour chosen by path; records what it saw."""

    def __init__(self) -> None:
        self.http_calls = 0
        self.ws_messages: list[dict[str, Any]] = []
        self.http_messages: list[dict[str, Any]] = []
        self.done = threading.Event()  # the test waits for it from its own thread
        self.send_errors: list[BaseException] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        if scope["type"] == "http":
            self.http_calls += 1
            if scope["method"] == "POST":  # read the body; note how it ended
                while True:
                    message = await receive()
                    self.http_messages.append(message)
                    if message["type"] == "http.disconnect" or not message["more_body"]:
                        break
                self.done.set()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        path = scope["path"]
        await receive()
        if path == "/raise-before-accept":
            raise ValueError("failed before accept")
        await send({"type": "websocket.accept"})
        if path == "/raise-after-accept":
            raise ValueError("failed after accept")
        try:
            while True:
                message = await receive()
                self.ws_messages.append(message)
                if message["type"] == "websocket.disconnect":
                    try:  # sending to a vanished client raises, as ASGI says
                        await send({"type": "websocket.send", "text": "too late"})
                    except OSError as exc:
                        self.send_errors.append(exc)
                    return
        finally:
            self.done.set()


def serving_check(srv: Any) -> None:
    assert requests.get(srv.url, timeout=TIMEOUT).text == "ok"


@pytest.mark.parametrize("garbage", [
    b"NOT AN HTTP REQUEST\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nonsense\r\n\r\n",
    b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"\x00\xff\x13\x37" * 64 + b"\r\n\r\n",
])
def test_malformed_request_gets_an_error_status_or_a_clean_close(garbage: bytes) -> None:
    app = App()
    with running_asgi(app) as srv:
        reply = raw_request(srv.port, garbage)
        assert reply == b"" or reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 411"))
        assert app.http_calls == 0
        serving_check(srv)


def test_client_leaving_mid_body_gives_the_app_http_disconnect() -> None:
    app = App()
    with running_asgi(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                         + b"x" * 1000)
        assert app.done.wait(TIMEOUT)
        serving_check(srv)
    received = b"".join(m.get("body", b"") for m in app.http_messages)
    assert received == b"x" * 1000
    assert all(m["more_body"] for m in app.http_messages[:-1])
    assert app.http_messages[-1] == {"type": "http.disconnect"}


def test_websocket_client_vanishing_gives_disconnect_1006() -> None:
    app = App()
    with running_asgi(app) as srv:
        ws = websocket.create_connection(srv.ws_url + "/chat", timeout=TIMEOUT)
        ws.send("hello")
        ws.sock.shutdown(socket.SHUT_RDWR)  # no close frame: the client just goes
        ws.sock.close()
        assert app.done.wait(TIMEOUT)
        serving_check(srv)
    # Only the key of the message kind, as uvicorn sends it: apps test `"text" in msg`.
    assert app.ws_messages[0] == {"type": "websocket.receive", "text": "hello"}
    assert app.ws_messages[-1]["type"] == "websocket.disconnect"
    assert app.ws_messages[-1]["code"] == 1006
    assert len(app.send_errors) == 1


def test_websocket_invalid_utf8_text_closes_with_1007() -> None:
    app = App()
    with running_asgi(app) as srv:
        ws = websocket.create_connection(srv.ws_url + "/chat", timeout=TIMEOUT)
        ws.send(b"\xff\xfe", opcode=websocket.ABNF.OPCODE_TEXT)
        opcode, frame = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 1007
        assert app.done.wait(TIMEOUT)
        serving_check(srv)
    # The C frame checks (Limits) answer 1007 before Python sees the frame: the app
    # learns that the client is gone.
    assert app.ws_messages[-1]["type"] == "websocket.disconnect"


def test_websocket_app_raising_before_accept_gives_500(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pymongoose.asgi")
    with running_asgi(App()) as srv:
        with pytest.raises(websocket.WebSocketBadStatusException) as failed:
            websocket.create_connection(srv.ws_url + "/raise-before-accept", timeout=TIMEOUT)
        assert failed.value.status_code == 500
        serving_check(srv)
    assert len([r for r in caplog.records if r.name == "pymongoose.asgi"]) == 1


def test_websocket_app_raising_after_accept_closes_with_1011(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pymongoose.asgi")
    with running_asgi(App()) as srv:
        ws = websocket.create_connection(srv.ws_url + "/raise-after-accept", timeout=TIMEOUT)
        opcode, frame = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 1011
        serving_check(srv)
    assert len([r for r in caplog.records if r.name == "pymongoose.asgi"]) == 1


def test_bad_websocket_handshake_gets_400() -> None:
    app = App()
    with running_asgi(app) as srv:
        reply = raw_request(srv.port, b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                      b"Connection: Upgrade\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400")
        serving_check(srv)
