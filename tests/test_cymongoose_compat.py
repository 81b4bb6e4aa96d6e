"""cymongoose 0.2.5 programs run unchanged: the API points its users rely on (issue 11).

The full cross-check is cymongoose's own suite (.ci/cymongoose-suite); these tests pin
the behaviour pymongoose adopted for it, driven by real clients.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Callable

import pytest
import requests
from conftest import read_until_closed

from pymongoose import (
    MG_EV_HTTP_MSG,
    MG_EV_WAKEUP,
    AsyncManager,
    Connection,
    Manager,
)
from pymongoose.asgi import ASGIServer
from pymongoose.errors import UnknownSchemeError
from pymongoose.wsgi import WSGIServer, _build_environ

TIMEOUT = 5.0


def test_set_handler_none_reverts_accepted_connections_to_the_managers() -> None:
    def default(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "default")

    def custom(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "custom")

    manager = Manager(default)
    listener = manager.listen("http://127.0.0.1:0")
    listener.set_handler(custom)
    listener.set_handler(None)  # before: accepted connections got no handler, and hung
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            manager.poll(20)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        port = listener.local_addr[1]  # type: ignore[index]
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT).text == "default"
    finally:
        stop.set()
        thread.join(TIMEOUT)
        manager.close()


def test_sse_after_a_head_written_with_send_is_chunked(serve: Callable[..., Any]) -> None:
    # cymongoose's way: the head by hand, events as chunks, an empty chunk to end.
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            conn.http_sse("message", "hello")
            conn.http_sse("update", "two\nlines")
            conn.http_chunk("")

    with serve(handler) as server:
        response = requests.get(server.url + "/", timeout=TIMEOUT)
    assert response.text == ("event: message\ndata: hello\n\n"
                             "event: update\ndata: two\ndata: lines\n\n")


def test_sse_in_a_chunked_reply_is_chunked(serve: Callable[..., Any]) -> None:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, headers={"Content-Type": "text/event-stream",
                                     "Transfer-Encoding": "chunked"})
            conn.http_sse("message", "in a chunk")
            conn.http_chunk("")

    with serve(handler) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        raw = read_until_closed(sock)
    body = raw.partition(b"\r\n\r\n")[2]
    event = b"event: message\ndata: in a chunk\n\n"
    assert body == b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event)


@pytest.mark.parametrize("headers", [
    {"X-Bad\0Name": "v"}, {"X-Ok": "hidden\0value"}, {"X-Ok": "a\r\nEvil: yes"},
])
def test_headers_with_nul_or_line_breaks_are_refused(serve: Callable[..., Any],
                                                     headers: dict[str, str]) -> None:
    refused: list[str] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            for call in (lambda: conn.reply(200, "x", headers),
                         lambda: conn.reply_json({}, 200, headers),
                         lambda: conn.ws_upgrade(data, extra_headers=headers)):
                try:
                    call()
                except ValueError as exc:
                    refused.append(str(exc))
            conn.reply(400, "refused")

    with serve(handler) as server:
        response = requests.get(server.url + "/", timeout=TIMEOUT)
    assert response.status_code == 400 and "Evil" not in response.headers
    assert len(refused) == 3
    assert all("illegal character" in text for text in refused)


def test_listen_on_an_unknown_scheme() -> None:
    with Manager() as mgr, pytest.raises(UnknownSchemeError, match="Failed to listen") as caught:
        mgr.listen("invalid://address")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RuntimeError)


def test_is_client_stays_known_after_close() -> None:
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]  # bound, not listening: connections are refused
        with Manager() as mgr:
            conn = mgr.connect(f"tcp://127.0.0.1:{port}")
            for _ in range(100):
                if conn.is_closed:
                    break
                mgr.poll(20)
            assert conn.is_closed and conn.is_client and not conn.is_udp


def test_async_manager_cymongoose_api() -> None:
    got: list[Any] = []

    async def main() -> None:
        done = asyncio.Event()

        def handler(conn: Connection, ev: int, data: Any) -> None:
            if ev == MG_EV_WAKEUP:
                got.append(data)
                am.schedule(done.set)

        am = AsyncManager(handler, 10)  # poll_interval, positional as in cymongoose
        with pytest.raises(RuntimeError, match="not started"):
            am.schedule(lambda: None)
        async with am:
            assert am.running
            listener = am.listen("tcp://127.0.0.1:0")
            ticks: list[int] = []
            am.timer_add(10, lambda: ticks.append(1), run_now=True)
            assert am.wakeup(listener.id, b"ping")
            await asyncio.wait_for(done.wait(), TIMEOUT)

            async def coro() -> None:
                got.append("coroutine ran")

            am.schedule(coro())
            for _ in range(50):
                if len(got) == 2:
                    break
                await asyncio.sleep(0.01)
            assert ticks
        assert not am.running

    asyncio.run(main())
    assert got == [b"ping", "coroutine ran"]


def test_wsgi_server_takes_workers_and_build_environ_exists() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    server = WSGIServer(app, 3)
    assert server.threads == 3
    listener = server.listen("http://127.0.0.1:0")
    stop = threading.Event()
    thread = threading.Thread(target=server.run, kwargs={"poll_ms": 20, "stop": stop})
    thread.start()
    try:
        port = listener.local_addr[1]  # type: ignore[index]
        assert requests.get(f"http://127.0.0.1:{port}/x", timeout=TIMEOUT).text == "/x"
    finally:
        stop.set()
        thread.join(TIMEOUT)

    class Request:
        method, uri, query, proto, body_bytes = "POST", "/a%20b?q=1", "", "HTTP/1.1", b"hi"

        def header(self, name: str, default: Any = None) -> Any:
            return default

        def headers(self) -> list[tuple[str, str]]:
            return [("Content-Length", "2"), ("X-Thing", "1"), ("X-Thing", "2")]

    class Peer:
        is_tls = True
        remote_addr = ("10.0.0.9", 4321, False)

    environ = _build_environ(Request(), Peer(), "example", 443)
    assert environ["PATH_INFO"] == "/a b" and environ["QUERY_STRING"] == "q=1"
    assert environ["wsgi.url_scheme"] == "https" and environ["SERVER_PORT"] == "443"
    assert environ["CONTENT_LENGTH"] == "2" and environ["HTTP_X_THING"] == "1,2"
    assert environ["wsgi.input"].read() == b"hi" and environ["REMOTE_ADDR"] == "10.0.0.9"


def test_asgi_server_start_returns_the_listener_and_stop_stops() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"asgi"})

    async def main() -> None:
        server = ASGIServer(app, lifespan=False)
        listener = await server.start("http://127.0.0.1:0")
        assert isinstance(listener, Connection) and listener.is_listening
        port = listener.local_addr[1]  # type: ignore[index]
        response = await asyncio.get_running_loop().run_in_executor(
            None, lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT))
        assert response.text == "asgi"
        await server.stop()
        assert listener.is_closed

    asyncio.run(main())


def test_asgi_server_built_outside_its_loop_still_runs_lifespan_shutdown() -> None:
    # cymongoose's tests build the server in one thread and run it in a new loop in
    # another; on Python 3.9 an asyncio.Queue made outside the loop never wakes in it.
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            for phase in ("startup", "shutdown"):
                message = await receive()
                events.append(message["type"])
                await send({"type": f"lifespan.{phase}.complete"})

    server = ASGIServer(app)

    async def main() -> None:
        await server.start("http://127.0.0.1:0")
        await asyncio.wait_for(server.stop(), TIMEOUT)

    thread = threading.Thread(target=lambda: asyncio.run(main()))
    thread.start()
    thread.join(TIMEOUT * 2)
    assert events == ["lifespan.startup", "lifespan.shutdown"]
