"""Limits: header, body and WebSocket message sizes, timeouts, the connection cap.

Each test starts a server with small limits, drives it with raw sockets (or requests),
and checks what a client sees: the status or close code, that the connection is closed,
that the handler never received what was refused, and that the server keeps serving.
The memory test runs its server in a child process and reads its peak resident size.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import requests
from conftest import Server, serving
from subprocess_helpers import running

from pymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_WS_MSG,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_CLOSE,
    WEBSOCKET_OP_CONTINUE,
    Connection,
    Limits,
    Manager,
)

#: How long the server may take to answer or close.
DEADLINE = 10.0
FIN = 0x80
MASK = b"\x11\x22\x33\x44"
HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


# -- helpers ------------------------------------------------------------------------------


@dataclass
class Seen:
    """What reached the handler."""

    requests: list[tuple[str, int]] = field(default_factory=list)  # (uri, body length)
    ws_messages: list[int] = field(default_factory=list)  # payload lengths
    accepted: int = 0
    open_now: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_open(self, count: int) -> bool:
        """Wait until exactly ``count`` accepted connections are open."""
        with self.changed:
            return self.changed.wait_for(lambda: self.open_now == count, DEADLINE)


def make_handler(seen: Seen) -> Callable[[Connection, int, Any], None]:
    """Answers every request with its URI and body length; upgrades /ws; echoes WS."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            with seen.changed:
                seen.accepted += 1
                seen.open_now += 1
                seen.changed.notify_all()
        elif ev == MG_EV_CLOSE and not conn.is_listening:
            with seen.changed:
                seen.open_now -= 1
                seen.changed.notify_all()
        elif ev == MG_EV_HTTP_MSG:
            seen.requests.append((data.uri, len(data.body_bytes)))
            if data.uri == "/ws":
                conn.ws_upgrade(data)
            else:
                conn.reply(200, f"{data.uri} {len(data.body_bytes)}")
        elif ev == MG_EV_WS_MSG:
            seen.ws_messages.append(len(data.data))
            conn.ws_send(data.data, data.op)

    return handler


@contextlib.contextmanager
def limited(limits: Limits) -> Iterator[tuple[Server, Seen]]:
    """A server whose listener follows ``limits``."""
    seen = Seen()
    with serving(make_handler(seen), limits=limits) as server:
        yield server, seen


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send, ignoring a server that already refused and closed."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def read_all(sock: socket.socket, timeout: float = DEADLINE) -> tuple[bytes, bool]:
    """Everything until the server closes: (bytes, closed before the deadline)."""
    received = b""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return received, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return received, False
        except ConnectionResetError:
            return received, True
        if not chunk:
            return received, True
        received += chunk


def status_of(raw: bytes) -> int:
    """The status code of the first response in ``raw`` (0 if none)."""
    if not raw.startswith(b"HTTP/1.1 "):
        return 0
    return int(raw[9:12])


def get(uri: str = "/", headers: bytes = b"") -> bytes:
    return b"GET " + uri.encode() + b" HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n"


def healthy(server: Server) -> None:
    """A normal request on a new connection is answered."""
    r = requests.get(server.url + "/health", timeout=DEADLINE)
    assert (r.status_code, r.text) == (200, "/health 0")


def ws_frame(first_byte: int, payload: bytes, length: int = -1) -> bytes:
    """A masked client frame; ``length`` may claim more than ``payload``."""
    size = len(payload) if length < 0 else length
    if size < 126:
        head = bytes([first_byte, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first_byte, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first_byte, 0x80 | 127]) + struct.pack("!Q", size)
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def server_frames(raw: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the complete unmasked frames in ``raw``."""
    frames, at = [], 0
    while len(raw) - at >= 2:
        size, pos = raw[at + 1] & 0x7F, at + 2
        if size == 126:
            size, pos = struct.unpack_from("!H", raw, pos)[0], pos + 2
        elif size == 127:
            size, pos = struct.unpack_from("!Q", raw, pos)[0], pos + 8
        if len(raw) < pos + size:
            break
        frames.append((raw[at] & 0x0F, raw[pos:pos + size]))
        at = pos + size
    return frames


def upgraded(server: Server) -> socket.socket:
    """A client connection after a successful WebSocket handshake."""
    sock = connect(server)
    sock.sendall(HANDSHAKE)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101")
    return sock


# -- the Limits object -------------------------------------------------------------------


def test_defaults_are_documented_values() -> None:
    """The defaults are the ones the table in docs/limits.md promises."""
    assert Limits() == Limits(max_header_size=32 * 1024, max_body_size=16 * 1024 * 1024,
                              max_ws_message_size=16 * 1024 * 1024, idle_timeout=60.0,
                              request_timeout=30.0, max_connections=0)
    assert Limits.unlimited() == Limits(0, 0, 0, 0, 0, 0)
    with Manager() as mgr:
        assert mgr.limits == Limits()
    custom = Limits(max_body_size=10)
    with Manager(limits=custom) as mgr:
        assert mgr.limits is custom


@pytest.mark.parametrize("kwargs, error", [
    ({"max_header_size": -1}, ValueError),
    ({"max_body_size": 1.5}, TypeError),
    ({"max_connections": True}, TypeError),
    ({"idle_timeout": -0.1}, ValueError),
    ({"request_timeout": float("inf")}, ValueError),
    ({"request_timeout": "30"}, TypeError),
])
def test_bad_values_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Negative, non-finite or mistyped limits raise with the field's name."""
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        Limits(**kwargs)


def test_limits_must_be_a_limits_object() -> None:
    with pytest.raises(TypeError, match=r"pymongoose\.Limits"):
        Manager(limits={"max_body_size": 1})  # type: ignore[arg-type]
    with Manager() as mgr, pytest.raises(TypeError, match=r"pymongoose\.Limits"):
        mgr.listen("http://127.0.0.1:0", limits=5)  # type: ignore[arg-type]


# -- header size ---------------------------------------------------------------------------


def test_head_at_the_limit_is_served_one_byte_more_is_431() -> None:
    """max_header_size counts the request line, the headers and the empty line."""
    limit = 1000
    with limited(Limits(max_header_size=limit)) as (server, seen):
        base = get("/h", b"X-Pad: \r\n")
        fits = get("/h", b"X-Pad: " + b"p" * (limit - len(base)) + b"\r\n")
        assert len(fits) == limit
        for request, expected in [(fits, 200), (fits[:-4] + b"p\r\n\r\n", 431)]:
            with connect(server) as sock:
                sock.sendall(request)
                raw, closed = read_all(sock) if expected != 200 else (sock.recv(4096), False)
            assert status_of(raw) == expected, raw[:100]
            if expected == 431:
                assert closed
        assert seen.requests == [("/h", 0)]
        healthy(server)


def test_unfinished_head_over_the_limit_is_refused_before_it_ends() -> None:
    """A head that never ends is refused once it passes the limit, not buffered on."""
    with limited(Limits(max_header_size=4096)) as (server, seen):
        with connect(server) as sock:
            send_quietly(sock, b"GET / HTTP/1.1\r\nX-Endless: " + b"a" * 8192)
            raw, closed = read_all(sock)
        assert status_of(raw) == 431 and closed
        assert seen.requests == []
        healthy(server)


def test_listener_limits_override_the_managers() -> None:
    """listen(limits=...) wins over Manager(limits=...) for that listener only."""
    seen = Seen()
    with Manager(make_handler(seen), limits=Limits(max_header_size=200)) as mgr:
        strict = mgr.listen("http://127.0.0.1:0")
        loose = mgr.listen("http://127.0.0.1:0", limits=Limits(max_header_size=4000))
        request = get("/x", b"X-Pad: " + b"p" * 500 + b"\r\n")
        answers = {}
        for name, listener in [("strict", strict), ("loose", loose)]:
            assert listener.local_addr is not None
            with socket.create_connection(("127.0.0.1", listener.local_addr[1])) as sock:
                sock.sendall(request)
                deadline = time.monotonic() + DEADLINE
                raw = b""
                while b"\r\n\r\n" not in raw and time.monotonic() < deadline:
                    mgr.poll(20)
                    sock.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        raw += sock.recv(4096)
                answers[name] = status_of(raw)
    assert answers == {"strict": 431, "loose": 200}


# -- body size -------------------------------------------------------------------------------


def test_content_length_over_the_limit_is_413_before_the_body() -> None:
    """The answer comes from the head alone: the client never sends the body."""
    with limited(Limits(max_body_size=1000)) as (server, seen):
        with connect(server) as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n")
            raw, closed = read_all(sock)
        assert status_of(raw) == 413 and closed
        r = requests.post(server.url + "/up", data=b"b" * 1000, timeout=DEADLINE)
        assert (r.status_code, r.text) == (200, "/up 1000")
        assert seen.requests == [("/up", 1000)]


def test_chunked_body_over_the_limit_is_413_while_it_arrives() -> None:
    """Chunks are added up as they arrive; the last chunk is never needed."""
    with limited(Limits(max_body_size=1000)) as (server, seen):
        with connect(server) as sock:
            sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(4):
                send_quietly(sock, b"12c\r\n" + b"c" * 300 + b"\r\n")  # 4 x 300 bytes
            raw, closed = read_all(sock)
        assert status_of(raw) == 413 and closed
        with connect(server) as sock:
            sock.sendall(b"POST /ok HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + b"12c\r\n" + b"c" * 300 + b"\r\n" + b"2bc\r\n" + b"d" * 700
                         + b"\r\n0\r\n\r\n")
            assert status_of(sock.recv(4096)) == 200
        assert seen.requests == [("/ok", 1000)]


def test_requests_client_sees_413() -> None:
    """What an ordinary client library reports for a body over the limit."""
    with limited(Limits(max_body_size=100)) as (server, seen):
        r = requests.post(server.url + "/up", data=b"x" * 101, timeout=DEADLINE)
        assert r.status_code == 413
        assert r.headers["Connection"] == "close"
        assert seen.requests == []


# -- WebSocket message size --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["one-frame", "fragments", "length-only"])
def test_websocket_message_over_the_limit_is_closed_1009(how: str) -> None:
    """A message over max_ws_message_size, whole or in fragments, closes with 1009."""
    with limited(Limits(max_ws_message_size=1000)) as (server, seen):
        with upgraded(server) as sock:
            sock.sendall(ws_frame(FIN | WEBSOCKET_OP_BINARY, b"a" * 1000))  # at the limit
            if how == "one-frame":
                send_quietly(sock, ws_frame(FIN | WEBSOCKET_OP_BINARY, b"b" * 1001))
            elif how == "fragments":
                send_quietly(sock, ws_frame(WEBSOCKET_OP_BINARY, b"c" * 600)
                             + ws_frame(WEBSOCKET_OP_CONTINUE, b"c" * 401))
            else:  # only the header, claiming 1 GiB: refused without waiting for it
                send_quietly(sock, ws_frame(FIN | WEBSOCKET_OP_BINARY, b"", 1 << 30))
            raw, closed = read_all(sock)
        frames = server_frames(raw)
        assert frames[0] == (WEBSOCKET_OP_BINARY, b"a" * 1000)
        assert frames[-1] == (WEBSOCKET_OP_CLOSE, struct.pack("!H", 1009))
        assert closed
        assert seen.ws_messages == [1000]
        healthy(server)


# -- timeouts ---------------------------------------------------------------------------------


def test_idle_connection_is_closed() -> None:
    """No request at all, or nothing after an answer: closed after idle_timeout."""
    with limited(Limits(idle_timeout=0.2)) as (server, seen):
        with connect(server) as silent, connect(server) as keep_alive:
            keep_alive.sendall(get("/once"))
            answer, closed = read_all(keep_alive)
            assert status_of(answer) == 200 and closed
            raw, closed = read_all(silent)
            assert (raw, closed) == (b"", True)
        assert seen.requests == [("/once", 0)]
        assert seen.wait_open(0)


def test_slow_request_is_408_even_while_bytes_keep_coming() -> None:
    """A request trickled a byte at a time is cut off at request_timeout with 408."""
    with limited(Limits(idle_timeout=5.0, request_timeout=0.3)) as (server, seen):
        with connect(server) as sock:
            request = get("/slow", b"X-A: " + b"a" * 500 + b"\r\n")
            answered_early = False
            for byte in request:
                send_quietly(sock, bytes([byte]))
                # The trickle's pace: one byte per 20 ms unless the server speaks first.
                if select.select([sock], [], [], 0.02)[0]:
                    answered_early = True
                    break
            raw, closed = read_all(sock)
        assert answered_early, "the whole request went through"
        assert status_of(raw) == 408 and closed
        assert seen.requests == []
        healthy(server)


def test_handler_taking_its_time_is_not_a_timeout() -> None:
    """A request the handler answers later is not cut off by the request timeout."""
    managers: list[Manager] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            managers[0].timer_add(600, lambda: conn.reply(200, "late"))

    with serving(handler, setup=managers.append,
                 limits=Limits(idle_timeout=0.2, request_timeout=0.2)) as server:
        r = requests.get(server.url + "/", timeout=DEADLINE)
    assert (r.status_code, r.text) == (200, "late")


# -- connection cap ---------------------------------------------------------------------------


def test_connections_over_the_cap_get_503_and_never_reach_the_handler() -> None:
    with limited(Limits(max_connections=2)) as (server, seen):
        first, second = connect(server), connect(server)
        for sock in (first, second):
            sock.sendall(get("/in"))
            assert status_of(sock.recv(4096)) == 200
        with connect(server) as third:
            raw, closed = read_all(third)
        assert status_of(raw) == 503 and closed
        assert seen.accepted == 2
        first.close()
        assert seen.wait_open(1)
        with connect(server) as fourth:
            fourth.sendall(get("/again"))
            assert status_of(fourth.recv(4096)) == 200
        second.close()
        assert seen.accepted == 3


def test_raw_tcp_listener_takes_limits_too() -> None:
    """A tcp:// listener: the cap closes the extra connection; idle ones are closed."""
    seen = Seen()
    limits = Limits(max_connections=1, idle_timeout=0.3)
    with serving(make_handler(seen), "tcp://127.0.0.1:0", limits=limits) as server, \
            connect(server) as first:
        assert seen.wait_open(1)
        with connect(server) as second:
            assert read_all(second) == (b"", True)
        assert read_all(first) == (b"", True)  # then idle
    assert seen.accepted == 1


# -- memory stays bounded -----------------------------------------------------------------------

SERVER = """
import sys
from pymongoose import Limits, Manager, MG_EV_HTTP_MSG

def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "ok")

mgr = Manager(handler, limits=Limits(max_header_size=16384, max_body_size=1 << 20))
listener = mgr.listen("http://127.0.0.1:0")
print("port", listener.local_addr[1], flush=True)
mgr.run(poll_ms=20)
"""


def vm_kb(pid: int, field_name: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def flood(port: int, kind: str) -> int:
    """Try to push 8 MiB through one connection; return the status the server sent."""
    block = b"z" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        if kind == "header":
            head = b"GET / HTTP/1.1\r\nX-Flood: "
        elif kind == "content-length":
            head = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (8 << 20)
        else:
            head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            block = b"10000\r\n" + block + b"\r\n"
        send_quietly(sock, head)
        for _ in range(128):
            try:
                sock.sendall(block)
            except (BrokenPipeError, ConnectionResetError):
                break
        raw, _ = read_all(sock)
    return status_of(raw)


def test_memory_stays_bounded_under_floods() -> None:
    """24 clients each push 8 MiB (192 MiB in all) at a server whose limits are 16 KiB of
    head and 1 MiB of body: its peak resident size grows by far less than that."""
    with running("-c", SERVER) as child:
        port = int(child.wait_for(r"port (\d+)").group(1))
        requests.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE)  # warm up
        pid = child.proc.pid
        before = vm_kb(pid, "VmRSS")
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda k=kind: statuses.append(flood(port, k)))
                   for kind in ("header", "content-length", "chunked") for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        peak = vm_kb(pid, "VmHWM")
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=DEADLINE)
        assert r.status_code == 200
    assert sorted(statuses) == [413] * 16 + [431] * 8
    assert peak - before < 24 * 1024, f"peak resident size grew by {peak - before} KiB"


# -- asyncio ----------------------------------------------------------------------------------


def test_async_manager_takes_limits() -> None:
    """AsyncManager(limits=...) passes them on; refusals and timeouts work under asyncio."""
    from pymongoose.aio import AsyncManager

    seen = Seen()

    async def main() -> tuple[bytes, bytes]:
        limits = Limits(max_header_size=200, request_timeout=0.3)
        async with AsyncManager(make_handler(seen), limits=limits, tick_ms=20) as amgr:
            assert amgr.manager.limits is limits
            listener = amgr.listen("http://127.0.0.1:0")
            assert listener.local_addr is not None
            port = listener.local_addr[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(get("/big", b"X-Pad: " + b"p" * 300 + b"\r\n"))
            too_big = await asyncio.wait_for(reader.read(), DEADLINE)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /never-finished HTTP/1.1\r\n")
            too_slow = await asyncio.wait_for(reader.read(), DEADLINE)
            writer.close()
            return too_big, too_slow

    too_big, too_slow = asyncio.run(main())
    assert (status_of(too_big), status_of(too_slow)) == (431, 408)
    assert seen.requests == []
