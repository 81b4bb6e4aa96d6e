"""Manager.connect as an HTTP client, talking to our own server.

Most tests put the server and the client in one Manager and poll it from the test
thread until what the test waits for has happened (or a deadline passes).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_POLL,
    MG_EV_READ,
    Connection,
    Manager,
)

pytestmark = pytest.mark.timeout(60)

DEADLINE_S = 10.0
#: The ``serve`` fixture of conftest: ``with serve(handler) as server: ...``
Serve = Callable[..., Any]


@dataclass
class Response:
    """What a client handler copied out of an MG_EV_HTTP_MSG before returning."""

    status: Optional[int]
    headers: list[tuple[str, str]]
    body: bytes
    method: str
    uri: str
    proto: str

    def header(self, name: str) -> Optional[str]:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class Client:
    """A client handler: sends ``requests[0]`` on connect, the next one after each response.

    After the last response it closes the connection. Every event is recorded.
    """

    requests: list[bytes]
    #: For raw (non-HTTP) connections: move received bytes into ``raw`` on MG_EV_READ.
    #: Never for HTTP ones, whose parser keeps a partial message in the buffer.
    take_raw: bool = False
    events: list[int] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    raw: bytes = b""
    connected_as_client: Optional[bool] = None

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev != MG_EV_POLL:
            self.events.append(ev)
        if ev == MG_EV_CONNECT:
            self.connected_as_client = conn.is_client
            conn.send(self.requests[0])
        elif ev == MG_EV_HTTP_MSG:
            self.responses.append(Response(data.status(), data.headers(), data.body_bytes,
                                           data.method, data.uri, data.proto))
            if len(self.responses) < len(self.requests):
                conn.send(self.requests[len(self.responses)])
            else:
                conn.close()
        elif ev == MG_EV_READ and self.take_raw:
            self.raw += conn.recv_data(consume=True)
        elif ev == MG_EV_ERROR:
            self.errors.append(data)

    @property
    def closed(self) -> bool:
        return MG_EV_CLOSE in self.events


class Loop:
    """One Manager polled by the test thread; handler exceptions are collected."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.manager = Manager(error_handler=self.errors.append)

    def listen(self, handler: Callable[[Connection, int, Any], Any]) -> str:
        """Start an HTTP server; returns its base URL."""
        listener = self.manager.listen("http://127.0.0.1:0", handler)
        addr = listener.local_addr
        assert addr is not None
        return f"http://127.0.0.1:{addr[1]}"

    def poll_until(self, done: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "condition not reached before the deadline"
            self.manager.poll(10)


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    try:
        yield lp
    finally:
        lp.manager.close()
    assert lp.errors == []


def get(path: str, port_url: str, *, extra: str = "") -> bytes:
    host = port_url.split("://", 1)[1]
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def hello_server(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, f"hello {data.uri}", headers={"X-Reply": "yes"})


def test_get_request_and_response(loop: Loop) -> None:
    """A request sent on MG_EV_CONNECT comes back as an MG_EV_HTTP_MSG response."""
    seen: list[tuple[str, str, Optional[str], bool]] = []

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            seen.append((data.method, data.uri, data.header("X-Client"), conn.is_client))
            conn.reply(200, "hello", headers={"X-Reply": "yes"})

    url = loop.listen(server)
    client = Client([get("/greet", url, extra="X-Client: pymongoose\r\n")])
    conn = loop.manager.connect(url + "/greet", client)
    loop.poll_until(lambda: client.closed)

    assert seen == [("GET", "/greet", "pymongoose", False)]
    assert client.connected_as_client is True
    assert client.errors == []
    [response] = client.responses
    assert response.status == 200
    assert response.body == b"hello"
    assert response.header("x-reply") == "yes"
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("Content-Length") == "5"
    # For a response the request-line fields hold the status line's parts.
    assert (response.method, response.uri, response.proto) == ("HTTP/1.1", "200", "OK")
    assert client.events.index(MG_EV_CONNECT) < client.events.index(MG_EV_HTTP_MSG)
    assert client.events[-1] == MG_EV_CLOSE
    assert conn.is_closed


def test_post_body_round_trip(loop: Loop) -> None:
    """A POST body sent by the client reaches the server intact, and the answer comes back."""
    body = os.urandom(200_000)

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply_json({"method": data.method, "length": len(data.body_bytes),
                             "sha256": hashlib.sha256(data.body_bytes).hexdigest()})

    url = loop.listen(server)
    request = (f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode() + body
    client = Client([request])
    loop.manager.connect(url + "/upload", client)
    loop.poll_until(lambda: client.closed)

    [response] = client.responses
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert json.loads(response.body) == {"method": "POST", "length": len(body),
                                         "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize(("status", "body"), [(404, b"nothing here"), (500, b"broken"),
                                              (204, b""), (418, b"short and stout")])
def test_status_codes(loop: Loop, status: int, body: bytes) -> None:
    """status() gives the response's status code; the body matches."""

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(status, body)

    url = loop.listen(server)
    client = Client([get("/", url)])
    loop.manager.connect(url + "/", client)
    loop.poll_until(lambda: client.closed)
    [response] = client.responses
    assert response.status == status
    assert response.body == body


def test_keep_alive_two_requests_one_connection(loop: Loop) -> None:
    """A second request on the same client connection reaches the same server Connection."""
    server_ids: list[int] = []

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            server_ids.append(conn.id)
            conn.reply(200, data.uri)

    url = loop.listen(server)
    client = Client([get("/first", url), get("/second", url)])
    loop.manager.connect(url + "/first", client)
    loop.poll_until(lambda: client.closed)
    assert [r.body for r in client.responses] == [b"/first", b"/second"]
    assert len(server_ids) == 2
    assert server_ids[0] == server_ids[1]
    assert client.events.count(MG_EV_CONNECT) == 1


def test_chunked_response_is_reassembled(loop: Loop) -> None:
    """A chunked response arrives as one body."""

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")

    url = loop.listen(server)
    client = Client([get("/", url)])
    loop.manager.connect(url + "/", client)
    loop.poll_until(lambda: client.closed)
    [response] = client.responses
    assert response.status == 200
    assert response.body == b"hello, world"
    assert response.header("Transfer-Encoding") == "chunked"


def test_response_ended_by_close(loop: Loop) -> None:
    """A response without Content-Length ends when the server closes; MSG comes before CLOSE."""

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.send(b"HTTP/1.1 200 OK\r\nX-Style: old\r\n\r\nbody until close")
            conn.drain()

    url = loop.listen(server)
    client = Client([get("/", url), get("/never-sent", url)])
    loop.manager.connect(url + "/", client)
    loop.poll_until(lambda: client.closed)
    [response] = client.responses
    assert response.body == b"body until close"
    assert response.header("X-Style") == "old"
    assert client.events.index(MG_EV_HTTP_MSG) < client.events.index(MG_EV_CLOSE)


def test_connect_to_closed_port_reports_error_then_close(loop: Loop) -> None:
    """Nobody listening: MG_EV_ERROR with a message (str), then MG_EV_CLOSE, no CONNECT."""
    # A bound socket that never listens keeps the port ours and refuses connections.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        client = Client([b"GET / HTTP/1.1\r\n\r\n"])
        conn = loop.manager.connect(f"http://127.0.0.1:{port}/", client)
        loop.poll_until(lambda: client.closed)

    assert len(client.errors) == 1
    assert isinstance(client.errors[0], str)
    assert client.errors[0]
    assert MG_EV_CONNECT not in client.events
    assert MG_EV_HTTP_MSG not in client.events
    assert client.events.index(MG_EV_ERROR) < client.events.index(MG_EV_CLOSE)
    assert client.events[-1] == MG_EV_CLOSE
    assert conn.is_closed
    assert conn not in loop.manager.connections


@pytest.mark.parametrize(
    ("scheme", "http", "parsed"),
    [("http", None, True), ("tcp", None, False), ("tcp", True, True), ("http", False, False)],
)
def test_http_inferred_from_scheme(loop: Loop, scheme: str, http: Optional[bool],
                                   parsed: bool) -> None:
    """http:// parses responses into MG_EV_HTTP_MSG; tcp:// leaves raw bytes; http= overrides."""
    url = loop.listen(hello_server)
    target = url.replace("http://", f"{scheme}://", 1) + "/x"
    client = Client([get("/x", url)], take_raw=not parsed)
    loop.manager.connect(target, client, http=http)
    if parsed:
        loop.poll_until(lambda: client.closed)
        [response] = client.responses
        assert response.status == 200
        assert response.body == b"hello /x"
    else:
        loop.poll_until(lambda: client.raw.endswith(b"hello /x"))
        assert client.raw.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nX-Reply: yes\r\n" in client.raw
        assert client.responses == []
        assert MG_EV_HTTP_MSG not in client.events


def test_event_filter_on_client(loop: Loop) -> None:
    """events= limits what the client handler sees to the codes asked for."""
    url = loop.listen(hello_server)
    client = Client([get("/filtered", url)])
    loop.manager.connect(url + "/filtered", client, events=(MG_EV_CONNECT, MG_EV_HTTP_MSG))
    loop.poll_until(lambda: len(client.responses) == 1)
    assert set(client.events) == {MG_EV_CONNECT, MG_EV_HTTP_MSG}
    assert client.responses[0].body == b"hello /filtered"


def test_client_against_server_in_another_thread(serve: Serve) -> None:
    """A client Manager in the test thread fetches a large body from a threaded server."""
    payload = os.urandom(1_000_000)

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, payload, headers={"Content-Type": "application/octet-stream"})

    with serve(server) as srv:
        lp = Loop()
        try:
            client = Client([get("/blob", srv.url)])
            lp.manager.connect(srv.url + "/blob", client)
            lp.poll_until(lambda: client.closed)
        finally:
            lp.manager.close()
        assert srv.errors == []
    assert lp.errors == []
    [response] = client.responses
    assert response.status == 200
    assert response.header("Content-Type") == "application/octet-stream"
    assert len(response.body) == len(payload)
    assert response.body == payload
