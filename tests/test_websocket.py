"""WebSocket: an echo server driven by websocket-client, and our own client against it."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
import websocket
from conftest import Server

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_CLOSE,
    WEBSOCKET_OP_PING,
    WEBSOCKET_OP_TEXT,
    Connection,
    HttpMessage,
    Manager,
    WsMessage,
)

TIMEOUT = 10.0

Record = tuple[Any, ...]


class EchoServer:
    """A WebSocket echo handler that reports what it saw on a thread-safe queue.

    Text messages "server-close" and "server-drop" make the server end the session
    with a CLOSE frame or by dropping the connection.
    """

    def __init__(self) -> None:
        self.seen: queue.Queue[Record] = queue.Queue()

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            self.seen.put(("http", conn.id, data.uri, conn.is_websocket,
                           data.header("X-Test-Token")))
            conn.ws_upgrade(data)
            self.seen.put(("upgraded", conn.id, conn.is_websocket))
        elif ev == MG_EV_WS_OPEN:
            self.seen.put(("ws_open", conn.id, type(data).__name__, data.uri,
                           conn.is_websocket))
        elif ev == MG_EV_WS_MSG:
            if data.op == WEBSOCKET_OP_TEXT and data.text == "server-close":
                # Status 1000 (normal closure); the client's answering CLOSE ends it.
                conn.ws_send(b"\x03\xe8bye", WEBSOCKET_OP_CLOSE)
            elif data.op == WEBSOCKET_OP_TEXT and data.text == "server-drop":
                conn.close()
            else:
                conn.ws_send(data.data, data.op)
        elif ev == MG_EV_WS_CTL:
            self.seen.put(("ws_ctl", conn.id, data.op, data.data))
        elif ev == MG_EV_CLOSE:
            self.seen.put(("close", conn.id))

    def expect(self, kind: str, conn_id: int = 0) -> Record:
        """The next record of ``kind`` (for ``conn_id`` when given), skipping others."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the server never reported {kind!r}")
            try:
                record = self.seen.get(timeout=remaining)
            except queue.Empty:
                continue
            if record[0] == kind and (not conn_id or record[1] == conn_id):
                return record


@pytest.fixture
def echo(serve: Callable[..., Any]) -> Iterator[tuple[Server, EchoServer]]:
    handler = EchoServer()
    with serve(handler) as server:
        yield server, handler
        assert server.errors == []


def open_client(server: Server, path: str = "/ws", **kwargs: Any) -> websocket.WebSocket:
    return websocket.create_connection(server.ws_url + path, timeout=TIMEOUT, **kwargs)


def test_text_round_trip_keeps_unicode(echo: tuple[Server, EchoServer]) -> None:
    server, _ = echo
    ws = open_client(server)
    try:
        for text in ("hello", "żółw 🐢 черепаха 亀", ""):
            ws.send(text)
            opcode, payload = ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_TEXT
            assert payload.decode("utf-8") == text
    finally:
        ws.close()


def test_binary_round_trip_keeps_every_byte(echo: tuple[Server, EchoServer]) -> None:
    server, _ = echo
    ws = open_client(server)
    try:
        payload = bytes(range(256)) * 4
        ws.send_binary(payload)
        opcode, echoed = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY
        assert echoed == payload
    finally:
        ws.close()


def test_one_megabyte_frame_arrives_intact(echo: tuple[Server, EchoServer]) -> None:
    server, _ = echo
    ws = open_client(server)
    try:
        payload = bytes((i * 7 + i // 256) % 256 for i in range(1 << 20))
        ws.send_binary(payload)
        opcode, echoed = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY
        assert len(echoed) == len(payload)
        assert echoed == payload
    finally:
        ws.close()


def test_ping_gets_a_pong_with_the_same_payload(echo: tuple[Server, EchoServer]) -> None:
    server, handler = echo
    ws = open_client(server)
    try:
        conn_id = handler.expect("ws_open")[1]
        ws.ping(b"are you there")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_PONG
        assert frame.data == b"are you there"
        assert handler.expect("ws_ctl", conn_id)[2:] == (WEBSOCKET_OP_PING, b"are you there")
    finally:
        ws.close()


def test_client_close_frame_closes_the_server_side(echo: tuple[Server, EchoServer]) -> None:
    server, handler = echo
    ws = open_client(server)
    conn_id = handler.expect("ws_open")[1]
    ws.close(status=websocket.STATUS_NORMAL)
    ctl = handler.expect("ws_ctl", conn_id)
    assert ctl[2] == WEBSOCKET_OP_CLOSE
    assert ctl[3][:2] == b"\x03\xe8"
    handler.expect("close", conn_id)


def test_server_close_frame_reaches_the_client(echo: tuple[Server, EchoServer]) -> None:
    server, handler = echo
    ws = open_client(server)
    try:
        conn_id = handler.expect("ws_open")[1]
        ws.send("server-close")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert frame.data == b"\x03\xe8bye"
        handler.expect("close", conn_id)
    finally:
        ws.close()
        # close() answers the server's close frame and may stop there (the server has
        # gone): shutdown() releases the socket (a ResourceWarning under -X dev).
        ws.shutdown()


def test_server_dropping_the_connection_is_seen_by_the_client(
        echo: tuple[Server, EchoServer]) -> None:
    server, handler = echo
    ws = open_client(server)
    try:
        conn_id = handler.expect("ws_open")[1]
        ws.send("server-drop")
        handler.expect("close", conn_id)
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            ws.recv()
    finally:
        ws.close()


def test_server_gets_ws_open_inside_ws_upgrade(echo: tuple[Server, EchoServer]) -> None:
    """Mongoose fires MG_EV_WS_OPEN on the server too, during ws_upgrade()."""
    server, handler = echo
    ws = open_client(server, "/chat?room=1")
    try:
        http = handler.expect("http")
        conn_id = http[1]
        assert http[2:4] == ("/chat", False)  # not yet a WebSocket while the request is handled
        assert handler.seen.get(timeout=TIMEOUT) == ("ws_open", conn_id, "HttpMessage", "/chat",
                                                     True)
        assert handler.seen.get(timeout=TIMEOUT) == ("upgraded", conn_id, True)
    finally:
        ws.close()


def test_upgrade_headers_reach_the_server(echo: tuple[Server, EchoServer]) -> None:
    server, handler = echo
    ws = open_client(server, header=["X-Test-Token: from-websocket-client"])
    try:
        assert handler.expect("http")[4] == "from-websocket-client"
    finally:
        ws.close()


def test_ws_upgrade_extra_headers_reach_the_client(serve: Callable[..., Any]) -> None:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data, {"X-Served-By": "pymongoose"})

    with serve(handler) as server:
        ws = open_client(server)
        try:
            assert ws.getheaders()["x-served-by"] == "pymongoose"
            assert ws.getstatus() == 101
        finally:
            ws.close()


def test_plain_http_request_to_a_websocket_endpoint_gets_426(
        echo: tuple[Server, EchoServer]) -> None:
    server, handler = echo
    response = requests.get(server.url + "/ws", timeout=TIMEOUT)
    assert response.status_code == 426
    assert handler.expect("http")[3] is False


def poll_until(mgr: Manager, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        mgr.poll(20)


def test_our_client_against_our_server(echo: tuple[Server, EchoServer]) -> None:
    server, handler = echo
    got: list[Record] = []

    def client(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            got.append(("connect",))
        elif ev == MG_EV_WS_OPEN:
            got.append(("ws_open", type(data), data.status(), conn.is_websocket, conn.is_client))
            conn.ws_send("hello from pymongoose ✓")
            conn.ws_send(b"\x00\xffbinary", WEBSOCKET_OP_BINARY)
        elif ev == MG_EV_WS_MSG:
            text = data.text if data.op == WEBSOCKET_OP_TEXT else None
            # isinstance: a message delivered from a batch is a WsMessage subclass
            got.append(("ws_msg", isinstance(data, WsMessage), data.op, data.data, text))
        elif ev == MG_EV_ERROR:
            got.append(("error", data))
        elif ev == MG_EV_CLOSE:
            got.append(("close",))

    with Manager() as mgr:
        conn = mgr.ws_connect(server.ws_url + "/ws", client,
                              headers={"X-Test-Token": "from-pymongoose"})
        poll_until(mgr, lambda: [r[0] for r in got].count("ws_msg") == 2
                   or ("error",) in [r[:1] for r in got])
        assert got == [
            ("connect",),
            ("ws_open", HttpMessage, 101, True, True),
            ("ws_msg", True, WEBSOCKET_OP_TEXT, "hello from pymongoose ✓".encode(),
             "hello from pymongoose ✓"),
            ("ws_msg", True, WEBSOCKET_OP_BINARY, b"\x00\xffbinary", None),
        ]
        assert handler.expect("http")[4] == "from-pymongoose"
        conn_id = handler.expect("ws_open")[1]

        # A CLOSE from our side: the server answers it and both ends close.
        conn.ws_send(b"\x03\xe8", WEBSOCKET_OP_CLOSE)
        poll_until(mgr, lambda: ("close",) in got)
        handler.expect("close", conn_id)
