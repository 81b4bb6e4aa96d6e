"""Streamed request bodies: Connection.stream_body, PYMG_EV_HTTP_BODY(_END), pause/resume."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from conftest import serving
from subprocess_helpers import running

from pymongoose import (
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    PYMG_EV_HTTP_BODY,
    PYMG_EV_HTTP_BODY_END,
    Connection,
    Limits,
)

GIB = 1 << 30
BLOCK = 1 << 20


def generated_blocks(total: int) -> Iterator[bytes]:
    """``total`` bytes made on the fly: 1 MiB blocks, each one different."""
    base = hashlib.sha256(b"seed").digest() * (BLOCK // 32)
    for i in range(total // BLOCK):
        yield i.to_bytes(8, "big") + base[8:]


_LEFTOVERS: dict[int, bytes] = {}  # bytes read past a response, by socket fileno


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP response with Content-Length from ``sock``: (head, body).

    Bytes of the next (pipelined) response are kept for the next call.
    """
    buf = _LEFTOVERS.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head; got {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a response body")
        rest += chunk
    if len(rest) > length:
        _LEFTOVERS[sock.fileno()] = rest[length:]
    return head, rest[:length]


def memory_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_one_gib_upload_streams_with_bounded_memory() -> None:
    with running("tests/stream_upload_server.py") as child:
        port = int(child.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        pid = child.proc.pid
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            # Warm up (imports, first allocations), then take the baseline.
            sock.sendall(b"POST /warm HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
            _, body = read_response(sock)
            assert body.decode() == f"{hashlib.sha256(b'hello').hexdigest()} 5"
            baseline = memory_kib(pid, "VmRSS")
            expected = hashlib.sha256()
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Length: %d\r\n\r\n" % GIB)
            for block in generated_blocks(GIB):
                expected.update(block)
                sock.sendall(block)
            _, body = read_response(sock)
            peak = memory_kib(pid, "VmHWM")
        assert body.decode() == f"{expected.hexdigest()} {GIB}"
        # Buffering the body would need 1 GiB (and Mongoose would refuse past 64 MiB).
        print(f"server RSS {baseline} KiB after warm-up, peak {peak} KiB")
        assert peak - baseline < 128 * 1024, f"RSS grew from {baseline} to {peak} KiB"


def test_chunked_body_then_keep_alive_and_pipelining() -> None:
    pieces: list[bytes] = []
    ends: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS and data.uri == "/stream":
            conn.stream_body(data)
        elif ev == PYMG_EV_HTTP_BODY:
            pieces.append(data)
        elif ev == PYMG_EV_HTTP_BODY_END:
            ends.append(conn.id)
            body = b"".join(pieces)
            pieces.clear()
            conn.reply(200, hashlib.sha256(body).hexdigest() + f" {len(body)}")
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, "plain " + data.body_text)

    payload = bytes(range(256)) * 4000  # 1,024,000 bytes
    sizes = [1, 7, 4096, 65536, 300000]
    chunks = []
    at = 0
    for size in sizes * 10:
        if at >= len(payload):
            break
        part = payload[at:at + size]
        chunks.append(b"%x;ext=1\r\n" % len(part) + part + b"\r\n")
        at += size
    assert at >= len(payload)
    request = (b"POST /stream HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(chunks) + b"0\r\nX-Trailer: yes\r\n\r\n")
    with serving(handler) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=30) as sock:
        # Two streamed requests and a buffered one, pipelined on one connection.
        sock.sendall(request + request
                     + b"POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok")
        expected = f"{hashlib.sha256(payload).hexdigest()} {len(payload)}".encode()
        assert read_response(sock)[1] == expected
        assert read_response(sock)[1] == expected
        assert read_response(sock)[1] == b"plain ok"
        assert not server.errors
    assert len(ends) == 2


def test_expect_continue_and_empty_body() -> None:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS:
            conn.userdata = b""
            conn.stream_body(data)
        elif ev == PYMG_EV_HTTP_BODY:
            conn.userdata += data
        elif ev == PYMG_EV_HTTP_BODY_END:
            conn.reply(200, b"got " + conn.userdata)

    with serving(handler) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"abc")
        assert read_response(sock)[1] == b"got abc"
        sock.sendall(b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[1] == b"got "


def test_bad_transfer_encoding_never_reaches_stream_body() -> None:
    # The head checks (Limits, on by default) answer 400 before MG_EV_HTTP_HDRS;
    # stream_body's own ValueError for such a head is a second line of defence.
    seen: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS:
            seen.append(ev)
            conn.stream_body(data)

    with serving(handler) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n")
        head, _body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 400")
        assert server.errors == []
    assert seen == []


def test_stream_body_outside_hdrs_raises() -> None:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            try:
                conn.stream_body(data)  # too late: the body was buffered already
            except RuntimeError as exc:
                conn.reply(500, str(exc))

    with serving(handler) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        head, body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 500") and b"MG_EV_HTTP_HDRS" in body


def test_pause_holds_the_client_back_and_resume_finishes() -> None:
    total = 32 << 20
    digest = hashlib.sha256()
    count = [0]
    held: list[tuple[bool, int]] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS:
            conn.stream_body(data)
        elif ev == PYMG_EV_HTTP_BODY:
            digest.update(data)
            count[0] += len(data)
            if count[0] >= total // 2 and not held and not conn.is_paused:
                conn.pause_reading()

                def look() -> None:
                    # While paused nothing more is read: the receive buffer stays put.
                    held.append((conn.is_paused, conn.recv_len))
                    if len(held) == 5:
                        timer.cancel()
                        conn.resume_reading()

                timer = conn._manager.timer_add(20, look, repeat=True)
        elif ev == PYMG_EV_HTTP_BODY_END:
            conn.reply(200, f"{digest.hexdigest()} {count[0]}")

    payload = hashlib.sha256(b"x").digest() * (total // 32)
    with serving(handler, limits=Limits(max_body_size=total)) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=60) as sock:
        sender = threading.Thread(target=sock.sendall, args=(
            b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total + payload,))
        sender.start()
        _, body = read_response(sock)
        sender.join(60)
    assert body.decode() == f"{hashlib.sha256(payload).hexdigest()} {total}"
    assert len(held) == 5
    assert all(paused for paused, _ in held)
    assert len({recv_len for _, recv_len in held}) == 1


def test_streamed_chunked_body_over_max_body_size_gets_413() -> None:
    pieces: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS:
            conn.stream_body(data)
        elif ev == PYMG_EV_HTTP_BODY:
            pieces.append(len(data))
        elif ev == PYMG_EV_HTTP_BODY_END:
            conn.reply(200, "whole body")

    chunk = b"%x\r\n%s\r\n" % (4096, b"z" * 4096)
    with serving(handler, limits=Limits(max_body_size=10_000)) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(chunk * 2)  # 8192 bytes: within the limit
        sock.sendall(chunk)      # 12288: over it
        head, _body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 413")
        assert server.errors == []
    assert sum(pieces) <= 8192
