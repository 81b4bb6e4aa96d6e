"""pymongoose.aio.AsyncManager: a Manager polled by a running asyncio (or uvloop) loop.

Most servers here run with the tick switched off (``tick_ms=NO_TICK``), so every reply
must go out because the loop saw Mongoose's descriptor, or because a send made outside
poll() asked for a poll: a reply that waited for a tick would never arrive in time.
Blocking clients (requests, websocket-client, sockets) run in the loop's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import platform
import signal
import socket
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest
import requests
import websocket
from subprocess_helpers import running

from pymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_HTTP_MSG,
    MG_EV_POLL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    Connection,
    ConnectionClosedError,
    ManagerClosedError,
    aio,
)
from pymongoose._ffi import lib
from pymongoose.aio import AsyncManager

TIMEOUT = 10.0
#: A tick so long that it never comes during a test.
NO_TICK = 3_600_000

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop_kind: str = "asyncio") -> T:
    """Run ``main`` to completion on a fresh loop of ``loop_kind`` ("asyncio" or "uvloop")."""
    if loop_kind == "asyncio":
        return asyncio.run(main)
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def in_thread(call: Callable[[], T]) -> asyncio.Future[T]:
    """Run a blocking client call in the loop's thread pool."""
    return asyncio.get_running_loop().run_in_executor(None, call)


class Tasks:
    """Keeps the tasks handlers start alive (the loop holds only weak references)."""

    def __init__(self) -> None:
        self.running: set[asyncio.Task[Any]] = set()

    def start(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.running.add(task)
        task.add_done_callback(self.running.discard)


def port_of(listener: Connection) -> int:
    addr = listener.local_addr
    assert addr is not None
    return addr[1]


def record_errors() -> tuple[list[BaseException], Callable[[BaseException], None]]:
    errors: list[BaseException] = []
    return errors, errors.append


# -- HTTP -------------------------------------------------------------------------------

LOOP_KINDS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(
        platform.python_implementation() == "PyPy",
        reason="uvloop is CPython-only: it cannot be installed on PyPy")),
]


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_http_server_under_load_leaves_the_loop_free(loop_kind: str) -> None:
    load_threads = 4
    wanted_ticks, wanted_requests = 30, 200
    served = 0
    ticks_during_load = 0
    enough = threading.Event()  # set by the ticker; the load threads stop then
    errors, on_error = record_errors()

    def handler(conn: Connection, ev: int, data: Any) -> None:
        nonlocal served
        if ev == MG_EV_HTTP_MSG:
            served += 1
            conn.reply(200, "hello " + data.uri)

    async def ticker() -> None:
        nonlocal ticks_during_load
        while not enough.is_set():
            await asyncio.sleep(0.01)
            ticks_during_load += 1
            if ticks_during_load >= wanted_ticks and served >= wanted_requests:
                enough.set()

    def load(url: str, worker: int) -> list[tuple[int, str]]:
        results = []
        deadline = time.monotonic() + 4 * TIMEOUT
        with requests.Session() as session:
            while not enough.is_set() and time.monotonic() < deadline:
                response = session.get(f"{url}/w{worker}", timeout=TIMEOUT)
                results.append((response.status_code, response.text))
        return results

    async def main() -> list[list[tuple[int, str]]]:
        async with AsyncManager(handler, error_handler=on_error, events=(MG_EV_HTTP_MSG,),
                                tick_ms=NO_TICK) as amgr:
            url = f"http://127.0.0.1:{port_of(amgr.listen('http://127.0.0.1:0'))}"
            ticking = asyncio.get_running_loop().create_task(ticker())
            try:
                return await asyncio.gather(
                    *(in_thread(lambda w=w: load(url, w)) for w in range(load_threads)))
            finally:
                enough.set()
                await ticking

    per_worker = run(main(), loop_kind)
    assert enough.is_set() and ticks_during_load >= wanted_ticks
    assert sum(len(results) for results in per_worker) == served >= wanted_requests
    for worker, results in enumerate(per_worker):
        assert results and set(results) == {(200, f"hello /w{worker}")}
    assert errors == []


def test_handler_replies_later_from_a_coroutine() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: more than a socket takes in one write
    tasks = Tasks()
    errors, on_error = record_errors()

    async def reply_later(conn: Connection, uri: str) -> None:
        await asyncio.sleep(0)
        if uri == "/big":
            conn.reply(200, big, headers={"Content-Type": "application/octet-stream"})
        else:
            conn.reply(201, f"later {uri}")

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            tasks.start(reply_later(conn, data.uri))  # copy the URI: the view expires

    async def main() -> None:
        async with AsyncManager(handler, error_handler=on_error, tick_ms=NO_TICK) as amgr:
            url = f"http://127.0.0.1:{port_of(amgr.listen('http://127.0.0.1:0'))}"
            with requests.Session() as session:
                for path in ("/one", "/two", "/big", "/three"):
                    response = await in_thread(
                        lambda p=path: session.get(url + p, timeout=TIMEOUT))
                    if path == "/big":
                        assert response.status_code == 200
                        assert response.content == big
                    else:
                        assert (response.status_code, response.text) == (201, f"later {path}")

    run(main())
    assert errors == []


def test_reply_after_the_client_left_raises_connection_closed() -> None:
    request_seen: Optional[asyncio.Future[Connection]] = None
    closed: Optional[asyncio.Future[None]] = None

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            assert request_seen is not None
            request_seen.set_result(conn)
        elif ev == MG_EV_CLOSE and not conn.is_listening:
            assert closed is not None
            closed.set_result(None)

    def send_request_and_leave(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")

    async def main() -> None:
        nonlocal request_seen, closed
        loop = asyncio.get_running_loop()
        request_seen, closed = loop.create_future(), loop.create_future()
        async with AsyncManager(handler, tick_ms=NO_TICK) as amgr:
            port = port_of(amgr.listen("http://127.0.0.1:0", events=(MG_EV_HTTP_MSG,
                                                                     MG_EV_CLOSE)))
            await in_thread(lambda: send_request_and_leave(port))
            conn = await asyncio.wait_for(request_seen, TIMEOUT)
            await asyncio.wait_for(closed, TIMEOUT)
            assert conn.is_closed
            with pytest.raises(ConnectionClosedError):
                conn.reply(200, "too late")

    run(main())


def test_static_file_goes_out_whole_without_ticks(tmp_path: Path) -> None:
    # Mongoose sends a file in chunks, refilling the send buffer itself during polls.
    content = bytes(range(251)) * 16000  # ~4 MB
    (tmp_path / "big.bin").write_bytes(content)

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.serve_dir(data, root_dir=str(tmp_path))

    async def main() -> None:
        async with AsyncManager(handler, tick_ms=NO_TICK) as amgr:
            url = f"http://127.0.0.1:{port_of(amgr.listen('http://127.0.0.1:0'))}"
            response = await in_thread(lambda: requests.get(url + "/big.bin", timeout=TIMEOUT))
            assert response.status_code == 200
            assert response.content == content

    run(main())


def test_raw_tcp_send_and_close_from_a_coroutine() -> None:
    tasks = Tasks()

    async def greet_then_close(conn: Connection) -> None:
        for word in (b"hello ", b"from ", b"a coroutine"):
            await asyncio.sleep(0)
            conn.send(word)
        conn.drain()  # send what is buffered, then close

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            tasks.start(greet_then_close(conn))

    def read_to_eof(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            chunks = []
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    async def main() -> bytes:
        async with AsyncManager(handler, events=(MG_EV_ACCEPT,), tick_ms=NO_TICK) as amgr:
            port = port_of(amgr.listen("tcp://127.0.0.1:0"))
            return await in_thread(lambda: read_to_eof(port))

    assert run(main()) == b"hello from a coroutine"


# -- WebSocket and clients --------------------------------------------------------------

def ws_echo_handler(tasks: Tasks) -> Callable[[Connection, int, Any], None]:
    """Upgrades every request; echoes text at once and binary from a coroutine."""

    async def echo_later(conn: Connection, payload: bytes, op: int) -> None:
        await asyncio.sleep(0)
        conn.ws_send(payload, op)

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            if data.op == WEBSOCKET_OP_BINARY:
                tasks.start(echo_later(conn, data.data, data.op))
            else:
                conn.ws_send(data.data, data.op)

    return handler


def test_websocket_echo_with_websocket_client() -> None:
    tasks = Tasks()
    big = bytes(range(256)) * 400  # 100 KB: beyond what C batches

    def talk(url: str) -> list[Any]:
        ws = websocket.create_connection(url, timeout=TIMEOUT)
        try:
            answers: list[Any] = []
            ws.send("hello")
            answers.append(ws.recv())
            ws.send_binary(b"\x00\x01\x02")
            answers.append(ws.recv())
            ws.send_binary(big)
            answers.append(ws.recv())
            return answers
        finally:
            ws.close()

    async def main() -> list[Any]:
        async with AsyncManager(ws_echo_handler(tasks), events=(MG_EV_HTTP_MSG, MG_EV_WS_MSG),
                                tick_ms=NO_TICK) as amgr:
            port = port_of(amgr.listen("http://127.0.0.1:0"))
            return await in_thread(lambda: talk(f"ws://127.0.0.1:{port}/ws"))

    assert run(main()) == ["hello", b"\x00\x01\x02", big]


def test_http_and_websocket_clients_on_the_same_loop() -> None:
    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG and data.uri == "/ws":
            conn.ws_upgrade(data)
        elif ev == MG_EV_HTTP_MSG:
            conn.reply_json({"path": data.uri})
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(data.text.upper())

    async def main() -> tuple[Any, str]:
        loop = asyncio.get_running_loop()
        http_answer: asyncio.Future[Any] = loop.create_future()
        ws_answer: asyncio.Future[str] = loop.create_future()

        def http_client(conn: Connection, ev: int, data: Any) -> None:
            if ev == MG_EV_CONNECT:
                conn.send(b"GET /asked HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            elif ev == MG_EV_HTTP_MSG:
                http_answer.set_result((data.status(), json.loads(data.body_text)))
                conn.close()

        def ws_client(conn: Connection, ev: int, data: Any) -> None:
            if ev == MG_EV_WS_OPEN:
                conn.ws_send("shout this")
            elif ev == MG_EV_WS_MSG:
                ws_answer.set_result(data.text)
                conn.close()

        async with AsyncManager(server, tick_ms=NO_TICK) as amgr:
            port = port_of(amgr.listen("http://127.0.0.1:0",
                                       events=(MG_EV_HTTP_MSG, MG_EV_WS_MSG)))
            await asyncio.sleep(0)  # connect from a coroutine, after start()
            amgr.connect(f"http://127.0.0.1:{port}/", http_client)
            amgr.ws_connect(f"ws://127.0.0.1:{port}/ws", ws_client)
            return (await asyncio.wait_for(http_answer, TIMEOUT),
                    await asyncio.wait_for(ws_answer, TIMEOUT))

    assert run(main()) == ((200, {"path": "/asked"}), "SHOUT THIS")


# -- life cycle -------------------------------------------------------------------------

def test_async_with_starts_and_closes() -> None:
    closed_ids: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CLOSE:
            closed_ids.append(conn.id)

    async def main() -> None:
        amgr = AsyncManager(handler, events=(MG_EV_CLOSE,))
        assert not amgr.started and not amgr.closed
        listener = amgr.listen("http://127.0.0.1:0")
        async with amgr as entered:
            assert entered is amgr and amgr.started
            assert amgr.manager.connections == (listener,)
            with pytest.raises(RuntimeError, match="already started"):
                amgr.start()
        assert amgr.closed and not amgr.started
        assert closed_ids == [listener.id] and listener.is_closed
        await amgr.close()  # twice is fine
        with pytest.raises(ManagerClosedError):
            amgr.listen("http://127.0.0.1:0")

    run(main())


def test_start_then_close_and_a_closed_manager_cannot_start() -> None:
    async def main() -> None:
        amgr = AsyncManager(tick_ms=NO_TICK)
        amgr.start()
        port = port_of(amgr.listen("http://127.0.0.1:0", lambda conn, ev, data: (
            conn.reply(200, "up") if ev == MG_EV_HTTP_MSG else None)))
        response = await in_thread(
            lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT))
        assert response.text == "up"
        await amgr.close()
        assert amgr.closed
        with pytest.raises(ManagerClosedError):
            amgr.start()

        unstarted = AsyncManager()
        await unstarted.close()
        with pytest.raises(ManagerClosedError):
            unstarted.start()

    run(main())


def test_manager_closed_behind_its_back_still_closes_cleanly() -> None:
    async def main() -> None:
        async with AsyncManager(tick_ms=NO_TICK) as amgr:
            amgr.listen("http://127.0.0.1:0")
            amgr.manager.close()  # Mongoose closes the descriptor the loop watches
            assert amgr.closed
        assert not amgr.started
        # The loop still works for others.
        async with AsyncManager(tick_ms=NO_TICK) as other:
            port = port_of(other.listen("http://127.0.0.1:0", lambda conn, ev, data: (
                conn.reply(200, "still here") if ev == MG_EV_HTTP_MSG else None)))
            response = await in_thread(
                lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT))
            assert response.text == "still here"

    run(main())


def test_start_needs_a_running_loop() -> None:
    amgr = AsyncManager()
    try:
        with pytest.raises(RuntimeError, match="no running event loop"):
            amgr.start()
    finally:
        run(amgr.close())


@pytest.mark.parametrize("tick_ms, error", [(0, ValueError), (-5, ValueError),
                                            ("100", TypeError), (True, TypeError)])
def test_tick_ms_is_checked(tick_ms: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="tick_ms"):
        AsyncManager(tick_ms=tick_ms)


# -- no busy polling --------------------------------------------------------------------

def test_idle_loop_polls_once_per_tick_not_continuously() -> None:
    tick_ms, idle_s = 20, 0.3
    polls = 0
    poll_events = 0

    def handler(conn: Connection, ev: int, data: Any) -> None:
        nonlocal poll_events
        if ev == MG_EV_POLL:
            poll_events += 1

    async def main() -> None:
        nonlocal polls
        async with AsyncManager(handler, events=(MG_EV_POLL,), tick_ms=tick_ms) as amgr:
            amgr.listen("http://127.0.0.1:0")
            real_poll = amgr.manager.poll

            def counting_poll(timeout_ms: int = 0) -> None:
                nonlocal polls
                polls += 1
                real_poll(timeout_ms)

            amgr.manager.poll = counting_poll  # an instance attribute hides the method
            await asyncio.sleep(idle_s)

    run(main())
    # With Mongoose's epoll descriptor the loop wakes on I/O and once a tick; a build
    # without one (PYMONGOOSE_PORTABLE=1: Mongoose's poll() path) polls every
    # FALLBACK_POLL_MS instead, which is still not continuously.
    period_ms = tick_ms if lib.pymg_build_features() & lib.PYMG_FEATURE_EPOLL else min(
        tick_ms, aio.FALLBACK_POLL_MS)
    ticks = idle_s * 1000 / period_ms  # 15 with epoll
    assert 2 <= polls <= 3 * ticks + 10, f"{polls} polls in {idle_s} s of idling"
    assert poll_events >= 2  # MG_EV_POLL keeps coming without I/O


def test_without_a_descriptor_it_falls_back_to_periodic_polling(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aio, "_poll_fd", lambda manager: -1)

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "polled")

    async def main() -> list[str]:
        async with AsyncManager(handler, tick_ms=NO_TICK) as amgr:
            url = f"http://127.0.0.1:{port_of(amgr.listen('http://127.0.0.1:0'))}"
            with requests.Session() as session:
                return [(await in_thread(lambda: session.get(url, timeout=TIMEOUT))).text
                        for _ in range(3)]

    assert run(main()) == ["polled"] * 3


# -- the example ------------------------------------------------------------------------

def test_asyncio_server_example() -> None:
    with running("examples/asyncio_server.py", "--listen", "http://127.0.0.1:0",
                 "--interval", "0.05") as child:
        url = child.wait_for(r"Listening on (http://127\.0\.0\.1:[1-9]\d*)").group(1)
        hello = requests.get(url + "/", timeout=TIMEOUT)
        assert (hello.status_code, hello.text) == (200, "Hello from asyncio!\n")
        first = requests.get(url + "/beat", timeout=TIMEOUT)
        second = requests.get(url + "/beat", timeout=TIMEOUT)
        assert first.headers["Content-Type"] == "application/json"
        assert 1 <= first.json()["beat"] < second.json()["beat"]
        assert child.stop(signal.SIGINT) == 0
