"""Lifetimes: connections closed by other handlers, a Manager closed mid-poll, garbage
collection between events, Python objects dropped or kept while C still runs."""

from __future__ import annotations

import base64
import contextlib
import gc
import os
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
import websocket
from conftest import Server

from pymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    MG_EV_READ,
    MG_EV_WRITE,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_TEXT,
    Connection,
    ConnectionClosedError,
    HttpMessage,
    Manager,
    ManagerClosedError,
    MessageExpiredError,
    WsMessage,
)

TIMEOUT = 10.0
WS_MASK = b"\x0f\x1e\x2d\x3c"


# -- driving a Manager from the test's own thread ---------------------------------------


def poll_until(mgr: Manager, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``mgr`` until ``done()``; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        mgr.poll(10)


def port_of(listener: Connection) -> int:
    addr = listener.local_addr
    assert addr is not None
    return addr[1]


def client(port: int) -> socket.socket:
    """A raw client connection; the test polls the Manager while it waits."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def receive_available(sock: socket.socket, into: bytearray) -> None:
    """Append what a non-blocking ``sock`` has received so far to ``into``."""
    with contextlib.suppress(BlockingIOError):
        into.extend(sock.recv(65536))


def ws_frame(text: bytes) -> bytes:
    """A masked client text frame (payloads under 126 bytes)."""
    assert len(text) < 126
    return (bytes([0x81, 0x80 | len(text)]) + WS_MASK
            + bytes(b ^ WS_MASK[i % 4] for i, b in enumerate(text)))


def ws_client(mgr: Manager, port: int) -> socket.socket:
    """A raw WebSocket client, upgraded (the Manager is polled until the 101 arrives)."""
    sock = client(port)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    received = bytearray()
    sock.setblocking(False)

    def upgraded() -> bool:
        receive_available(sock, received)
        return b"\r\n\r\n" in received

    poll_until(mgr, upgraded)
    sock.setblocking(True)
    assert received.startswith(b"HTTP/1.1 101")
    return sock


def closed_by_server(mgr: Manager, sock: socket.socket) -> bool:
    """Poll (while the Manager lives) until the server closes ``sock``; True if it did."""
    sock.setblocking(False)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except BlockingIOError:
            pass
        except ConnectionResetError:
            return True
        if mgr.closed:
            sock.settimeout(TIMEOUT)  # nothing polls any more: the close is already sent
            try:
                while sock.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            return True
        mgr.poll(10)
    return False


class Tracker:
    """Records every event by connection, and the handler exceptions."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int]] = []
        self.errors: list[BaseException] = []

    def closes(self, conn_id: int) -> int:
        return sum(1 for cid, ev in self.events if cid == conn_id and ev == MG_EV_CLOSE)


# -- a handler that closes other connections ----------------------------------------------


def test_handler_closes_other_connections() -> None:
    """A request on one connection closes every other one; each gets one MG_EV_CLOSE."""
    tracker = Tracker()
    accepted: dict[int, Connection] = {}
    killed: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        tracker.events.append((conn.id, ev))
        if ev == MG_EV_ACCEPT:
            accepted[conn.id] = conn
        elif ev == MG_EV_HTTP_MSG and data.uri == "/ws":
            conn.ws_upgrade(data)
        elif ev == MG_EV_HTTP_MSG and data.uri == "/kill":
            for other in mgr.connections:
                if other is not conn and not other.is_listening:
                    other.close()
                    other.send(b"never sent")  # still valid until its MG_EV_CLOSE
                    killed.append(other.id)
            conn.reply(200, f"closed {len(killed)}")
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, "ok")

    mgr = Manager(handler, error_handler=tracker.errors.append)
    sockets: list[socket.socket] = []
    try:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        sockets += [client(port) for _ in range(4)]
        sockets[0].sendall(b"GET /half-a-request HTTP/1.1\r\n")
        sockets += [ws_client(mgr, port), ws_client(mgr, port)]
        poll_until(mgr, lambda: len(accepted) == len(sockets))
        victims = dict(accepted)
        killer = client(port)
        sockets.append(killer)
        killer.sendall(b"GET /kill HTTP/1.1\r\nConnection: close\r\n\r\n")
        for sock in sockets:
            assert closed_by_server(mgr, sock), "a client was not closed"
        poll_until(mgr, lambda: all(c.is_closed for c in victims.values()))
        assert sorted(killed) == sorted(victims)
        for conn_id, conn in victims.items():
            assert tracker.closes(conn_id) == 1
            assert conn.is_closed and conn.is_closing
            with pytest.raises(ConnectionClosedError):
                conn.send(b"late")
        # The server keeps going.
        with client(port) as sock:
            sock.sendall(b"GET /after HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert closed_by_server(mgr, sock)
        assert tracker.errors == []
    finally:
        mgr.close()
        for sock in sockets:
            sock.close()


def test_websocket_message_handler_closes_the_other_sessions() -> None:
    """Closing other WebSocket sessions from a (batched) message handler is safe."""
    tracker = Tracker()
    sessions: list[Connection] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        tracker.events.append((conn.id, ev))
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_OPEN:
            sessions.append(conn)
        elif ev == MG_EV_WS_MSG:
            if data.text == "close-the-others":
                for other in sessions:
                    if other is not conn:
                        other.close()
            conn.ws_send(data.data, data.op)  # the victims' queued messages too

    mgr = Manager(handler, error_handler=tracker.errors.append)
    try:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        socks = [ws_client(mgr, port) for _ in range(5)]
        poll_until(mgr, lambda: len(sessions) == len(socks))
        for sock in socks[1:]:
            sock.sendall(ws_frame(b"hello"))
        socks[0].sendall(ws_frame(b"close-the-others"))
        for sock in socks[1:]:
            assert closed_by_server(mgr, sock)
        poll_until(mgr, lambda: all(c.is_closed for c in sessions[1:]))
        assert not sessions[0].is_closed
        assert tracker.errors == []
        for sock in socks:
            sock.close()
    finally:
        mgr.close()


# -- a Manager closed from inside a handler -------------------------------------------------


@pytest.mark.parametrize("trigger", ["http-message", "websocket-message", "websocket-open"])
def test_manager_closed_from_a_handler_while_others_are_active(trigger: str) -> None:
    """close() inside a handler takes effect when poll() returns; everyone is closed once."""
    tracker = Tracker()
    conns: dict[int, Connection] = {}
    state: dict[str, Any] = {}

    def shut_down(conn: Connection) -> None:
        mgr.close()
        state["closed_inside"] = mgr.closed  # deferred: still False here
        conn.send(b"")  # the connection stays usable until the poll ends

    def handler(conn: Connection, ev: int, data: Any) -> None:
        tracker.events.append((conn.id, ev))
        conns[conn.id] = conn
        if ev == MG_EV_HTTP_MSG and data.uri == "/ws":
            conn.ws_upgrade(data)
        elif ((ev == MG_EV_HTTP_MSG and data.uri == "/shutdown")
              or (ev == MG_EV_WS_OPEN and state.get("shut_down_on_open"))
              or (ev == MG_EV_WS_MSG and data.text == "shutdown")):
            shut_down(conn)

    mgr = Manager(handler, error_handler=tracker.errors.append)
    port = port_of(mgr.listen("http://127.0.0.1:0"))
    idle = [client(port) for _ in range(3)]
    idle[1].sendall(b"POST /upload HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial")
    sessions = [ws_client(mgr, port) for _ in range(2)]
    poll_until(mgr, lambda: len([c for c in conns.values() if not c.is_listening]) == 5)
    if trigger == "http-message":
        trigger_sock = client(port)
        trigger_sock.sendall(b"GET /shutdown HTTP/1.1\r\n\r\n")
    elif trigger == "websocket-message":
        trigger_sock = sessions[0]
        trigger_sock.sendall(ws_frame(b"shutdown"))
    else:
        state["shut_down_on_open"] = True
        trigger_sock = client(port)
        trigger_sock.sendall(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             b"Sec-WebSocket-Version: 13\r\n\r\n")
    poll_until(mgr, lambda: mgr.closed)
    assert state["closed_inside"] is False
    assert tracker.errors == []
    for conn_id, conn in conns.items():
        assert conn.is_closed, f"connection {conn_id} outlived its Manager"
        assert tracker.closes(conn_id) == 1, f"connection {conn_id}: MG_EV_CLOSE count"
    for sock in {*idle, *sessions, trigger_sock}:
        sock.settimeout(TIMEOUT)
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        sock.close()
    with pytest.raises(ManagerClosedError):
        mgr.poll(0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    mgr.close()  # a second close is harmless


# -- garbage collection between events ----------------------------------------------------


@pytest.mark.timeout(300)  # a full collection per event: slow by design, more so on PyPy
def test_gc_collect_in_every_handler_call_under_load(serve: Callable[..., Any]) -> None:
    """A full collection inside every handler call, while several clients are served."""
    collections = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        collections.append(gc.collect())
        if ev == MG_EV_HTTP_MSG and data.uri == "/ws":
            conn.ws_upgrade(data)
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, f"{data.uri} {data.body_text}")
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(data.data, data.op)

    failures: list[str] = []

    def http_client(server: Server, n: int) -> None:
        with requests.Session() as session:
            for i in range(10):
                r = session.post(f"{server.url}/c{n}", data=f"{i}", timeout=TIMEOUT)
                if r.text != f"/c{n} {i}":
                    failures.append(r.text)

    def ws_session(server: Server, n: int) -> None:
        ws = websocket.create_connection(f"{server.ws_url}/ws", timeout=TIMEOUT)
        try:
            for i in range(10):
                payload = f"{n}-{i}-" + "x" * (i * 3000)  # some batched, some not
                ws.send(payload)
                if ws.recv() != payload:
                    failures.append(f"ws {n}-{i}")
        finally:
            ws.close()

    events = (MG_EV_ACCEPT, MG_EV_READ, MG_EV_WRITE, MG_EV_HTTP_MSG, MG_EV_WS_OPEN,
              MG_EV_WS_MSG, MG_EV_CLOSE)
    with serve(handler, events=events) as server:
        threads = [threading.Thread(target=http_client, args=(server, n)) for n in range(3)]
        threads += [threading.Thread(target=ws_session, args=(server, n)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 3)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
        assert server.errors == []
    assert len(collections) > 50


# -- Python objects dropped or kept while C still runs ------------------------------------


def test_dropped_connection_wrappers_keep_their_identity() -> None:
    """Dropping every reference to a live Connection loses nothing: the same wrapper (and
    its userdata) comes back with the next event, and it is freed once closed."""
    seen: list[tuple[int, Any]] = []
    wrappers: list[weakref.ref[Connection]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            conn.userdata = f"tag-{conn.id}"
            wrappers.append(weakref.ref(conn))
        elif ev == MG_EV_HTTP_MSG:
            seen.append((conn.id, conn.userdata))
            conn.reply(200, "ok")
        gc.collect()

    mgr = Manager(handler)
    try:
        listener = mgr.listen("http://127.0.0.1:0", events=(MG_EV_ACCEPT, MG_EV_HTTP_MSG))
        listener.userdata = "the listener"
        listener_ref = weakref.ref(listener)
        port = port_of(listener)
        del listener
        gc.collect()
        assert listener_ref() is not None, "the wrapper of a live listener was freed"
        socks = [client(port) for _ in range(3)]
        poll_until(mgr, lambda: len(wrappers) == 3)
        gc.collect()
        for round_no in range(1, 4):  # more events after the drop, on every connection
            for sock in socks:
                sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            poll_until(mgr, lambda expected=3 * round_no: len(seen) == expected)
        assert all(tag == f"tag-{conn_id}" for conn_id, tag in seen)
        assert [c.userdata for c in mgr.connections if c.is_listening] == ["the listener"]
        for sock in socks:
            sock.close()
        poll_until(mgr, lambda: len(mgr.connections) == 1)
        gc.collect()
        assert [ref() for ref in wrappers] == [None, None, None], "closed wrappers leaked"
    finally:
        mgr.close()
    gc.collect()
    assert listener_ref() is None


def test_dropped_manager_is_either_kept_alive_or_really_gone() -> None:
    """An unclosed Manager whose last reference is dropped must not become a dangling C
    object: either the library keeps it usable, or its sockets are closed."""

    def make_server() -> tuple[weakref.ref[Manager], int]:
        mgr = Manager(lambda conn, ev, data: conn.reply(200, "still here")
                      if ev == MG_EV_HTTP_MSG else None)
        return weakref.ref(mgr), port_of(mgr.listen("http://127.0.0.1:0"))

    ref, port = make_server()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    mgr = ref()
    # Collected: the finalizer freed the C side, and said so.
    assert (mgr is None) == any(issubclass(w.category, ResourceWarning)
                                and "without close" in str(w.message) for w in caught)
    other = Manager()  # a new Manager is unaffected by the dropped one
    other.close()
    if mgr is None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        return
    try:
        with client(port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            received = bytearray()
            sock.setblocking(False)

            def answered() -> bool:
                receive_available(sock, received)
                return received.endswith(b"still here")

            poll_until(mgr, answered)
    finally:
        mgr.close()


def test_views_kept_by_a_handler_expire_and_are_never_reused() -> None:
    """Views kept past their handler raise MessageExpiredError, even while later events
    are being handled, and never show a later message."""
    kept: list[Any] = []
    kept_events: list[int] = []
    problems: list[str] = []

    def check_kept_views(current: Any) -> None:
        for old in kept:
            if old is current:
                problems.append(f"{old!r} was handed out again")
            if old.is_valid or bool(old):
                problems.append("a kept view came back to life")
            try:
                _ = old.data if isinstance(old, WsMessage) else old.uri
            except MessageExpiredError:
                pass
            else:
                problems.append("a kept view could still be read")

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if isinstance(data, (HttpMessage, WsMessage)):
            check_kept_views(data)
        if ev == MG_EV_HTTP_MSG and data.uri == "/ws":
            conn.ws_upgrade(data)  # MG_EV_WS_OPEN runs inside this call
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, data.uri)
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(data.data, WEBSOCKET_OP_TEXT)
        if isinstance(data, (HttpMessage, WsMessage)):
            kept.append(data)  # kept once its handler is done with it
            kept_events.append(ev)

    mgr = Manager(handler)
    try:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        with client(port) as sock:
            for i in range(5):
                sock.sendall(b"GET /%d?q=%d HTTP/1.1\r\nX-N: %d\r\n\r\n" % (i, i, i))
            poll_until(mgr, lambda: kept_events.count(MG_EV_HTTP_MSG) == 5)
        ws = ws_client(mgr, port)
        for i in range(5):
            ws.sendall(ws_frame(b"small %d" % i))
        big = b"B" * 20_000  # delivered directly, not batched
        ws.sendall(b"\x82\xff" + len(big).to_bytes(8, "big") + WS_MASK
                   + bytes(b ^ WS_MASK[i % 4] for i, b in enumerate(big)))
        poll_until(mgr, lambda: kept_events.count(MG_EV_WS_MSG) == 6)
        ws.close()
    finally:
        mgr.close()
    assert problems == []
    assert {MG_EV_HTTP_HDRS, MG_EV_HTTP_MSG, MG_EV_WS_OPEN, MG_EV_WS_MSG} == set(kept_events)
    assert len({id(view) for view in kept}) == len(kept)
    for view in kept:
        assert not view.is_valid and not view
        assert "expired" in repr(view)
        for read in expired_reads(view):
            with pytest.raises(MessageExpiredError):
                read()


def expired_reads(view: Any) -> Iterator[Callable[[], Any]]:
    """Every way of reading ``view``'s content."""
    if isinstance(view, HttpMessage):
        for name in ("method", "uri", "query", "proto", "body_bytes", "body_text",
                     "head_bytes"):
            yield lambda name=name: getattr(view, name)
        yield lambda: view.header("X-N")
        yield view.headers
        yield lambda: view.query_var("q")
        yield lambda: view.body_var("q")
        yield view.status
        yield lambda: view.header_var("Content-Type", "charset")
    else:
        for name in ("data", "text", "flags", "op"):
            yield lambda name=name: getattr(view, name)


def test_view_kept_across_a_manager_close_and_collection() -> None:
    """A view outliving its Manager (and a collection) still only raises."""
    kept: list[HttpMessage] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            kept.append(data)
            conn.reply(200, "ok")

    mgr = Manager(handler)
    port = port_of(mgr.listen("http://127.0.0.1:0"))
    with client(port) as sock:
        sock.sendall(b"GET /v HTTP/1.1\r\n\r\n")
        poll_until(mgr, lambda: bool(kept))
    mgr.close()
    del mgr
    gc.collect()
    with pytest.raises(MessageExpiredError):
        kept[0].headers()
