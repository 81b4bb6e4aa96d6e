"""Chunked replies, Server-Sent Events, Connection.error and http_basic_auth."""

from __future__ import annotations

import base64
import socket
import time
from typing import Any, Callable

import pytest
import requests
from conftest import read_until_closed

from pymongoose import MG_EV_CONNECT, MG_EV_ERROR, MG_EV_HTTP_MSG, Connection, Manager

TIMEOUT = 10.0


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        return read_until_closed(sock)


def chunked_handler(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "first;", headers={"Transfer-Encoding": "chunked"})
        conn.http_chunk("second;")
        conn.http_chunk(b"third")
        conn.http_chunk("")


def test_chunked_reply_reaches_requests_whole(serve: Callable[..., Any]) -> None:
    with serve(chunked_handler) as server, requests.Session() as session:
        session.trust_env = False
        for _ in range(2):  # the connection stays usable after the last chunk
            response = session.get(server.url + "/", timeout=TIMEOUT)
            assert response.status_code == 200
            assert response.text == "first;second;third"
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert "Content-Length" not in response.headers


def test_chunked_reply_framing_on_the_wire(serve: Callable[..., Any]) -> None:
    with serve(chunked_handler) as server:
        raw = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-length" not in head.lower()
    assert body == b"6\r\nfirst;\r\n7\r\nsecond;\r\n5\r\nthird\r\n0\r\n\r\n"


def test_server_sent_events(serve: Callable[..., Any]) -> None:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, headers={"Content-Type": "text/event-stream",
                                     "Cache-Control": "no-cache"})
            conn.http_sse("greeting", "hello")
            conn.http_sse("update", "line one\nline two")
            conn.drain()

    with serve(handler) as server:
        raw = raw_exchange(server.port, b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"text/event-stream" in head and b"content-length" not in head.lower()
    assert body == (b"event: greeting\ndata: hello\n\n"
                    b"event: update\ndata: line one\ndata: line two\n\n")


def test_sse_and_chunk_refuse_bad_input(serve: Callable[..., Any]) -> None:
    problems: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            for call, error in [(lambda: conn.http_sse("a\nb", "x"), ValueError),
                                (lambda: conn.http_sse("a", 1), TypeError),  # type: ignore[arg-type]
                                (lambda: conn.http_chunk(1), TypeError)]:  # type: ignore[arg-type]
                try:
                    call()
                    problems.append(f"no {error.__name__}")
                except error:
                    pass
            conn.reply(200, "ok")

    with serve(handler) as server:
        assert requests.get(server.url, timeout=TIMEOUT).text == "ok"
    assert problems == []


def test_error_raises_mg_ev_error_and_closes(serve: Callable[..., Any]) -> None:
    seen: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.error("refused by policy")
        elif ev == MG_EV_ERROR:
            seen.append(data)

    with serve(handler) as server:
        raw = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert raw == b""  # closed without an answer
    assert seen == ["refused by policy"]


def test_http_basic_auth_on_a_client_request() -> None:
    got: list[str] = []
    responses: list[int] = []

    def server_handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            got.append(data.header("Authorization", ""))
            conn.reply(200, "ok")

    def client_handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
            conn.http_basic_auth("alice", "s3cret:with colon")
            conn.send(b"\r\n")
        elif ev == MG_EV_HTTP_MSG:
            responses.append(data.status())

    with Manager() as mgr:
        listener = mgr.listen("http://127.0.0.1:0", server_handler)
        port = listener.local_addr[1]  # type: ignore[index]
        client = mgr.connect(f"http://127.0.0.1:{port}/", client_handler)
        deadline = time.monotonic() + TIMEOUT
        while not responses:
            assert time.monotonic() < deadline, "no response"
            mgr.poll(20)
        with pytest.raises(ValueError):
            client.http_basic_auth("a:b", "c")
    expected = base64.b64encode(b"alice:s3cret:with colon").decode()
    assert got == [f"Basic {expected}"]
    assert responses == [200]
