"""ASGI 3.0 conformance of pymongoose.asgi, written from the specification.

Raw ASGI applications record what the server hands them (scope keys and types, message
order) and misbehave on purpose; blocking clients (requests, raw sockets,
websocket-client) drive them from the test thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import pytest
import requests
import websocket
from asgi_helpers import LOOP_KINDS, TIMEOUT, raw_request, running_asgi
from conftest import read_until_closed

Scope = dict[str, Any]


class Recorder:
    """A raw ASGI app: records scopes and received messages, answers by path."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")  # tolerated: the server goes on
        self.scopes.append(scope)
        if scope["type"] == "websocket":
            self.received.append(await receive())
            offered = scope["subprotocols"]
            await send({"type": "websocket.accept",
                        "subprotocol": offered[-1] if offered else None,
                        "headers": [(b"x-accepted", b"yes")]})
            while True:
                message = await receive()
                self.received.append(message)
                if message["type"] == "websocket.disconnect":
                    return
                await send({"type": "websocket.send", "text": message.get("text"),
                            "bytes": message.get("bytes")})
        body = b""
        while True:
            message = await receive()
            self.received.append(message)
            body += message["body"]
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"x-path", scope["path"].encode("utf-8"))]})
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_http_scope_has_every_key_with_its_type(loop_kind: str) -> None:
    app = Recorder()
    with running_asgi(app, loop_kind) as srv:
        reply = requests.post(srv.url + "/caf%C3%A9/x%2Fy?a=1&b=%20", data=b"payload",
                              headers={"X-Custom": "Value"}, timeout=TIMEOUT)
    assert reply.status_code == 200
    assert reply.content == b"payload"
    scope = app.scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["asgi"]["spec_version"], str)
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café/x/y"
    assert scope["raw_path"] == b"/caf%C3%A9/x%2Fy"
    assert scope["query_string"] == b"a=1&b=%20"
    assert scope["root_path"] == ""
    assert ("x-custom", "Value") in [(k.decode(), v.decode()) for k, v in scope["headers"]]
    assert all(isinstance(k, bytes) and isinstance(v, bytes) and k == k.lower()
               for k, v in scope["headers"])
    client, server = scope["client"], scope["server"]
    assert client[0] == "127.0.0.1" and isinstance(client[1], int) and client[1] > 0
    assert server == ("127.0.0.1", srv.port)
    assert "state" not in scope  # no lifespan state was given
    assert app.received == [{"type": "http.request", "body": b"payload", "more_body": False}]


def test_websocket_scope_and_message_order() -> None:
    app = Recorder()
    with running_asgi(app) as srv:
        ws = websocket.create_connection(srv.ws_url + "/chat?room=1", timeout=TIMEOUT,
                                         subprotocols=["one", "two"])
        assert ws.subprotocol == "two"  # the app's choice, not every offer echoed
        assert ws.getheaders()["x-accepted"] == "yes"
        ws.send("text")
        assert ws.recv() == "text"
        ws.send_binary(b"\x00\x01")
        assert ws.recv() == b"\x00\x01"
        ws.close(status=4001, reason=b"bye")
        for _ in range(100):  # the app records the disconnect on the server's thread
            if app.received and app.received[-1]["type"] == "websocket.disconnect":
                break
            srv.call(asyncio.sleep(0.01))
    scope = app.scopes[0]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat"
    assert scope["query_string"] == b"room=1"
    assert scope["subprotocols"] == ["one", "two"]
    assert "method" not in scope
    types = [m["type"] for m in app.received]
    assert types == ["websocket.connect", "websocket.receive", "websocket.receive",
                     "websocket.disconnect"]
    assert app.received[1]["text"] == "text"
    assert app.received[2]["bytes"] == b"\x00\x01"
    assert app.received[3]["code"] == 4001
    assert app.received[3]["reason"] == "bye"


def test_keep_alive_reuses_the_connection_and_head_has_no_body() -> None:
    app = Recorder()
    with running_asgi(app) as srv, socket.create_connection(("127.0.0.1", srv.port),
                                                            timeout=TIMEOUT) as sock:
        for _ in range(3):
            sock.sendall(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"content-length: 0\r\n" in reply
        sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\n")  # head only, then the server closed
    assert len({s["client"] for s in app.scopes}) == 1


def streaming_app(framing: str) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        headers = [(b"content-length", b"9")] if framing == "sized" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for part in (b"abc", b"def", b"ghi"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


@pytest.mark.parametrize("framing", ["sized", "chunked"])
def test_streamed_response_is_framed_as_the_headers_say(framing: str) -> None:
    with running_asgi(streaming_app(framing)) as srv:
        raw = raw_request(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = requests.get(srv.url, timeout=TIMEOUT)
    head, _, body = raw.partition(b"\r\n\r\n")
    if framing == "sized":
        assert b"content-length: 9" in head and body == b"abcdefghi"
    else:
        assert b"transfer-encoding: chunked" in head
        assert body == b"3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n0\r\n\r\n"
    assert reply.content == b"abcdefghi"


def test_http_disconnect_reaches_a_waiting_app() -> None:
    seen: list[str] = []
    gone = threading.Event()  # the test waits for it from its own thread

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        seen.append((await receive())["type"])
        if scope["path"] == "/wait":
            seen.append((await receive())["type"])  # blocks until the client leaves
            gone.set()

    with running_asgi(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            srv.call(asyncio.sleep(0.05))
        assert gone.wait(TIMEOUT)
        assert requests.get(srv.url, timeout=TIMEOUT).status_code == 500  # returned silently
    assert seen == ["http.request", "http.disconnect", "http.request"]


def misbehaving_app(scope: Scope, receive: Any, send: Any) -> Any:
    """Different illegal behaviour per path; /ok answers normally."""

    async def run() -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        path = scope["path"]
        start = {"type": "http.response.start", "status": 200, "headers": []}
        if path == "/body-before-start":
            await send({"type": "http.response.body", "body": b"x"})
        elif path == "/after-complete":
            await send(start)
            await send({"type": "http.response.body", "body": b"done"})
            await send({"type": "http.response.body", "body": b"more"})
        elif path == "/wrong-type":
            await send({"type": "websocket.accept"})
        elif path == "/raise-before-start":
            raise ValueError("boom before start")
        elif path == "/raise-after-start":
            await send(start)
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise ValueError("boom after start")
        elif path == "/no-response":
            return
        elif path == "/bad-status":
            await send({"type": "http.response.start", "status": "200", "headers": []})
        elif path == "/bad-header":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"x-evil", b"a\r\nset-cookie: 1")]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send(start)
            await send({"type": "http.response.body", "body": b"ok"})

    return run()


@pytest.mark.parametrize("path,expect", [
    ("/body-before-start", 500),
    ("/wrong-type", 500),
    ("/raise-before-start", 500),
    ("/no-response", 500),
    ("/bad-status", 500),
    ("/bad-header", 500),
    ("/after-complete", 200),
    ("/raise-after-start", None),
])
def test_illegal_app_behaviour_gives_500_or_a_clean_close_logged_once(
        path: str, expect: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pymongoose.asgi")
    with running_asgi(misbehaving_app) as srv:
        raw = raw_request(srv.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\n\r\n".encode())
        if expect is None:  # part of the body went out: only a close can say "failed"
            assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
            assert not raw.endswith(b"0\r\n\r\n")  # the chunked body never ended
        else:
            assert raw.startswith(b"HTTP/1.1 %d " % expect)
        if path == "/after-complete":
            assert raw.endswith(b"\r\n\r\ndone")
        # the server keeps serving
        assert requests.get(srv.url + "/ok", timeout=TIMEOUT).text == "ok"
    errors = [r for r in caplog.records if r.name == "pymongoose.asgi"]
    assert len(errors) == 1, [r.getMessage() for r in errors]


def test_http_1_0_streamed_response_ends_with_the_connection() -> None:
    with running_asgi(streaming_app("chunked")) as srv:
        raw = raw_request(srv.port, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"abcdefghi"


def test_pipelined_requests_are_answered_in_order() -> None:
    app = Recorder()
    with running_asgi(app) as srv:
        requests_ = b"".join(b"POST /p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n%02d"
                             % (i, i) for i in range(5))
        raw = raw_request(srv.port, requests_ + b"GET /last HTTP/1.1\r\nHost: x\r\n"
                                                b"Connection: close\r\n\r\n")
    replies = raw.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(replies) == 6
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in replies] == [b"00", b"01", b"02", b"03",
                                                             b"04", b""]
    assert [s["path"] for s in app.scopes] == ["/p0", "/p1", "/p2", "/p3", "/p4", "/last"]


async def send_buffer_sizes(server: Any) -> list[int]:
    return [c.send_len for c in server.manager.connections if not c.is_listening]


def test_large_streamed_response_waits_for_a_slow_client() -> None:
    import hashlib

    piece = bytes(range(256)) * 1024  # 256 KiB
    pieces = 48  # 12 MiB: far more than the 1 MiB the server lets wait per connection
    buffered: list[int] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with running_asgi(app) as srv, socket.create_connection(("127.0.0.1", srv.port),
                                                            timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(buffered) < 20:  # look from the server's own thread
                buffered.extend(srv.call(send_buffer_sizes(srv.server)))
    body = data.partition(b"\r\n\r\n")[2]
    decoded, rest = b"", body
    while True:  # undo the chunked framing
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        decoded += rest[:size]
        rest = rest[size + 2:]
    assert hashlib.sha256(decoded).digest() == hashlib.sha256(piece * pieces).digest()
    # The send buffer never held much more than the high-water mark plus one piece.
    assert max(buffered) <= (1 << 20) + 2 * len(piece)


def test_http_1_0_keep_alive_is_said_and_honoured() -> None:
    app = Recorder()
    with running_asgi(app) as srv, socket.create_connection(("127.0.0.1", srv.port),
                                                            timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reply = sock.recv(65536)
        assert b"connection: keep-alive\r\n" in reply
        sock.sendall(b"GET /b HTTP/1.0\r\n\r\n")
        reply = read_until_closed(sock)
        assert b"connection: close\r\n" in reply
    assert [s["http_version"] for s in app.scopes] == ["1.0", "1.0"]
