"""Message views never reach past the bytes received (found by fuzz/fuzz_http_conn).

Mongoose raises MG_EV_HTTP_HDRS before the body has arrived, and a WebSocket client's
MG_EV_WS_OPEN with the server's 101 response, whose body length is its Content-Length
or "until the connection closes" (~0) without one. The views must show what was
received, not read past the receive buffer.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from pymongoose import (
    MG_EV_ERROR,
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    MG_EV_READ,
    MG_EV_WS_OPEN,
    Connection,
    Manager,
)


def _poll_until(mgr: Manager, done: threading.Event, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done.is_set() and time.monotonic() < deadline:
        mgr.poll(20)
    assert done.is_set(), "the awaited event never came"


def test_headers_event_body_is_only_what_arrived(serve: Any) -> None:
    seen: dict[str, Any] = {}
    headers_seen = threading.Event()

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS and "body" not in seen:
            seen["body"] = data.body_bytes
            seen["var"] = data.body_var("a")
            headers_seen.set()
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, str(len(data.body_bytes)))

    declared = 100_000
    with serve(handler) as server, socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                  b"\r\nContent-Length: %d\r\n\r\na=1&" % declared)
        assert headers_seen.wait(10)
        s.sendall(b"b" * (declared - 4))
        reply = b""
        while not reply.endswith(b"\r\n\r\n100000"):
            chunk = s.recv(4096)
            assert chunk, reply
            reply += chunk
    assert not server.errors
    assert b"a=1&".startswith(seen["body"])  # before the fix: 100,000 bytes, mostly not ours
    assert seen["var"] in (None, "1")


def _ws_open_body(response: bytes) -> Any:
    """What a WebSocket client's handler sees in MG_EV_WS_OPEN's body for ``response``."""
    result: dict[str, Any] = {}
    done = threading.Event()

    def fake_server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_READ and b"\r\n\r\n" in conn.recv_data():
            conn.recv_data(consume=True)
            conn.send(response)

    def client(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_OPEN:
            result["head"] = data.head_bytes
            result["body"] = data.body_bytes
            result["text"] = data.body_text
            done.set()
        elif ev == MG_EV_ERROR:
            result["error"] = data
            done.set()

    errors: list[BaseException] = []
    with Manager(error_handler=errors.append) as mgr:
        listener = mgr.listen("tcp://127.0.0.1:0", fake_server)
        port = listener.local_addr[1]  # type: ignore[index]
        mgr.ws_connect(f"ws://127.0.0.1:{port}/ws", client)
        _poll_until(mgr, done)
    assert not errors, errors
    assert "error" not in result, result
    return result


HANDSHAKE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n")


def test_ws_open_without_content_length_has_an_empty_body() -> None:
    # Before the fix the body's length was ~0: reading it failed or crashed.
    result = _ws_open_body(HANDSHAKE + b"\r\n")
    assert result["head"].startswith(b"HTTP/1.1 101")
    assert result["body"] == b""
    assert result["text"] == ""


def test_ws_open_with_a_content_length_never_received_reads_no_further() -> None:
    result = _ws_open_body(HANDSHAKE + b"Content-Length: 50000\r\n\r\n")
    assert result["body"] == b""
