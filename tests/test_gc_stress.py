"""A full garbage collection before every event Python receives, under mixed traffic.

The handler asks for every event (MG_EV_POLL included) and runs ``gc.collect()`` first
thing each time, while HTTP clients, WebSocket sessions, the server's own HTTP client
connections, and clients that the limits refuse all run at once. Nothing may break: every
answer is right, no handler raises, every view kept past its call has expired, and every
connection kept past its close says so.
"""

from __future__ import annotations

import gc
import socket
import threading
from typing import Any

import pytest
import requests
import websocket
from conftest import Server, serving

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_HTTP_MSG,
    MG_EV_WS_MSG,
    Connection,
    ConnectionClosedError,
    HttpMessage,
    Limits,
    Manager,
    MessageExpiredError,
    WsMessage,
)

TIMEOUT = 30.0


class Collecting:
    """The handler: collects, then serves; keeps every view and connection it saw."""

    def __init__(self) -> None:
        self.collections = 0
        self.views: list[Any] = []
        self.conns: dict[int, Connection] = {}
        self.closed_ids: set[int] = set()
        self.client_answers: list[bytes] = []
        self.manager: Manager | None = None
        self.url = ""

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        gc.collect()
        self.collections += 1
        self.conns[conn.id] = conn
        if isinstance(data, (HttpMessage, WsMessage)):
            self.views.append(data)
        if ev == MG_EV_CLOSE:
            self.closed_ids.add(conn.id)
        elif ev == MG_EV_CONNECT and conn.is_client:
            conn.send(b"GET /from-self HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        elif ev == MG_EV_HTTP_MSG and conn.is_client:
            self.client_answers.append(data.body_bytes)
        elif ev == MG_EV_HTTP_MSG and data.uri == "/ws":
            conn.ws_upgrade(data)
        elif ev == MG_EV_HTTP_MSG:
            if data.uri == "/spawn" and self.manager is not None:
                self.manager.connect(self.url + "/from-self", self)  # served here too
            conn.reply(200, f"{data.uri} {data.body_text}")
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(data.data, data.op)


@pytest.mark.timeout(180)
def test_gc_collect_before_every_event_under_mixed_traffic() -> None:
    handler = Collecting()
    failures: list[str] = []
    limits = Limits(max_header_size=2048, request_timeout=1.0)

    def setup(mgr: Manager) -> None:
        handler.manager = mgr

    def http_client(server: Server, n: int) -> None:
        with requests.Session() as session:
            for i in range(8):
                path = "/spawn" if i % 4 == 0 else f"/c{n}"
                r = session.post(server.url + path, data=f"{n}.{i}", timeout=TIMEOUT)
                if r.text != f"{path} {n}.{i}":
                    failures.append(f"http {n}.{i}: {r.text!r}")

    def ws_session(server: Server, n: int) -> None:
        ws = websocket.create_connection(server.ws_url + "/ws", timeout=TIMEOUT)
        try:
            for i in range(6):
                payload = f"{n}-{i}-" + "x" * (i * 5000)  # batched in C, then not
                ws.send(payload)
                if ws.recv() != payload:
                    failures.append(f"ws {n}.{i}")
        finally:
            ws.close()

    def refused_client(server: Server, n: int) -> None:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 4096 + b"\r\n\r\n")
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
                if not answer.startswith(b"HTTP/1.1 431"):
                    failures.append(f"refused {n}: {answer[:40]!r}")

    with serving(handler, setup=setup, limits=limits) as server:
        handler.url = server.url
        threads = [threading.Thread(target=http_client, args=(server, n)) for n in range(2)]
        threads += [threading.Thread(target=ws_session, args=(server, n)) for n in range(2)]
        threads += [threading.Thread(target=refused_client, args=(server, n)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 4)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
        assert server.errors == []
    # Each /spawn made one client connection whose request this same handler answered.
    assert sorted(handler.client_answers) == [b"/from-self "] * 4
    assert handler.collections > 200
    for view in handler.views:
        with pytest.raises(MessageExpiredError):
            _ = view.data if isinstance(view, WsMessage) else view.uri
    for conn_id in handler.closed_ids:
        with pytest.raises(ConnectionClosedError):
            handler.conns[conn_id].send(b"late")
