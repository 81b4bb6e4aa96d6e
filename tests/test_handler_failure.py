"""A request handler that raises never leaves its client waiting (issue 11).

Before it answered: ``500 Internal Server Error`` with Content-Length, then the
connection closes. After it began an answer (or a WebSocket upgrade): the connection
closes. Either way the exception still reaches the error handler. Every client here has
a short timeout, so a regression fails fast instead of hanging.
"""

from __future__ import annotations

import socket
import subprocess
from typing import Any, Callable

import pytest
import requests
import websocket
from conftest import read_until_closed

from pymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG, Connection

TIMEOUT = 5.0


class Boom(Exception):
    pass


def failing(before: Callable[[Connection, Any], None]) -> Callable[[Connection, int, Any], None]:
    """A handler that runs ``before`` for /fail and then raises; /ok answers normally."""
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/ok":
                conn.reply(200, "fine")
                return
            before(conn, data)
            raise Boom(f"handler failed on {data.uri}")
        if ev == MG_EV_WS_MSG:
            conn.ws_send(data.data)
    return handler


def nothing(conn: Connection, data: Any) -> None:
    pass


def test_raising_before_answering_gives_500_and_close(serve: Callable[..., Any]) -> None:
    with serve(failing(nothing)) as server:
        response = requests.get(server.url + "/fail", timeout=TIMEOUT)
        assert response.status_code == 500
        assert response.text == "Internal Server Error\n"
        assert response.headers["Content-Length"] == str(len(response.content))
        assert response.headers["Connection"] == "close"
        assert requests.get(server.url + "/ok", timeout=TIMEOUT).text == "fine"
    assert [str(e) for e in server.errors] == ["handler failed on /fail"]


def test_the_500_closes_a_keep_alive_connection(serve: Callable[..., Any]) -> None:
    with serve(failing(nothing)) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /fail HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = read_until_closed(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ")
    assert b"Content-Length: 22" in head and body == b"Internal Server Error\n"


def test_raising_after_a_partial_answer_closes(serve: Callable[..., Any]) -> None:
    def start_a_stream(conn: Connection, data: Any) -> None:
        conn.reply(200, "part one;", headers={"Transfer-Encoding": "chunked"})

    with serve(failing(start_a_stream)) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /fail HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = read_until_closed(sock, reset_is_close=True)
    # What was sent before the failure, then the end of the connection: no 500 after a
    # 200 has begun, and no final chunk that would pass the truncated body as whole.
    assert b" 500 " not in raw
    assert not raw.endswith(b"0\r\n\r\n")
    assert len(server.errors) == 1


def test_raising_after_a_complete_reply_keeps_it(serve: Callable[..., Any]) -> None:
    def answer(conn: Connection, data: Any) -> None:
        conn.reply(200, "answered, then failed")

    with serve(failing(answer)) as server:
        response = requests.get(server.url + "/fail", timeout=TIMEOUT)
        assert response.status_code == 200 and response.text == "answered, then failed"
    assert len(server.errors) == 1


def test_curl_does_not_wait(serve: Callable[..., Any]) -> None:
    with serve(failing(nothing)) as server:
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
             server.url + "/fail"],
            capture_output=True, text=True, timeout=30, check=False)
    # curl exits 28 on its --max-time: a regression fails here, not after minutes.
    assert done.returncode == 0, done.stderr
    assert done.stdout == "500"


def test_a_websocket_upgrade_handler_that_raises_before_upgrading(
        serve: Callable[..., Any]) -> None:
    with serve(failing(nothing)) as server:
        with pytest.raises(websocket.WebSocketBadStatusException) as caught:
            websocket.create_connection(server.ws_url + "/fail", timeout=TIMEOUT)
        assert caught.value.status_code == 500
    assert len(server.errors) == 1


def test_a_websocket_upgrade_handler_that_raises_after_upgrading(
        serve: Callable[..., Any]) -> None:
    def upgrade(conn: Connection, data: Any) -> None:
        conn.ws_upgrade(data)

    with serve(failing(upgrade)) as server:
        ws = websocket.create_connection(server.ws_url + "/fail", timeout=TIMEOUT)
        try:
            # The upgrade went out, then the connection closed: the next read ends.
            with pytest.raises((websocket.WebSocketConnectionClosedException,
                                ConnectionError)):
                ws.send("anyone there?")
                ws.recv()
        finally:
            ws.close()
    assert len(server.errors) == 1
