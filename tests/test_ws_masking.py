"""WebSocket masking (RFC 6455 5.3) both ways, checked against Python's own XOR.

The build replaces Mongoose's byte-at-a-time unmasking and masking loops with ones
that work eight bytes at a time (build_ffi.MONGOOSE_FIXES). The server side is checked
with frames masked here, by a client that is not pymongoose; the client side by a raw
socket server that unmasks here: a mistake in both loops cannot cancel out.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Server, serving
from hypothesis import given, settings
from hypothesis import strategies as st
from test_lifetime import poll_until
from ws_frames import FIN, OP_BINARY, Frame, client_frame, parse_frames, read_frames, upgrade

from pymongoose import (
    MG_EV_HTTP_MSG,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    Connection,
    Manager,
)

TIMEOUT = 10.0
#: Around every boundary of the eight-byte loop, of the 4-byte key, and of the three
#: header length forms (7-bit, 16-bit, 64-bit).
LENGTHS = [*range(41), 63, 64, 65, 125, 126, 127, 1000, 65535, 65536, 70001]


def echo(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.ws_upgrade(data)
    elif ev == MG_EV_WS_MSG:
        conn.ws_send(data.data, WEBSOCKET_OP_BINARY)


def payload_of(length: int) -> bytes:
    return os.urandom(length)


@pytest.fixture
def echo_server() -> Iterator[Server]:
    with serving(echo) as running:
        yield running


def test_server_unmasks_every_length_and_key(echo_server: Server) -> None:
    payloads = [payload_of(n) for n in LENGTHS]
    keys = [os.urandom(4) for _ in LENGTHS]
    keys[0], keys[1] = b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"
    sock, _, rest = upgrade(echo_server.port)
    with sock:
        sock.sendall(b"".join(client_frame(FIN | OP_BINARY, p, mask=k)
                              for p, k in zip(payloads, keys)))
        frames, _ = read_frames(sock, len(payloads), rest)
    assert echo_server.errors == []
    assert [f.payload for f in frames] == payloads


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), st.binary(min_size=4, max_size=4)),
                min_size=1, max_size=8))
def test_server_unmasks_whatever_a_client_sends(frames: list[tuple[bytes, bytes]]) -> None:
    with serving(echo) as server:
        sock, _, rest = upgrade(server.port)
        with sock:
            sock.sendall(b"".join(client_frame(FIN | OP_BINARY, p, mask=k) for p, k in frames))
            answer, _ = read_frames(sock, len(frames), rest)
    assert [f.payload for f in answer] == [p for p, _ in frames]


class RawWebSocketServer:
    """One WebSocket session by hand: accepts, answers the upgrade, then collects the
    frames the client sends, unmasked by ws_frames.parse_frames (in Python)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.frames: list[Frame] = []
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.listener.settimeout(TIMEOUT)
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                raw = b""
                while b"\r\n\r\n" not in raw:
                    raw += conn.recv(65536)
                head, _, rest = raw.partition(b"\r\n\r\n")
                key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                           if line.lower().startswith(b"sec-websocket-key:"))
                accept = base64.b64encode(hashlib.sha1(
                    key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                             + b"\r\n\r\n")
                buffer = rest
                while True:
                    frames, buffer = parse_frames(buffer)
                    self.frames += frames
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure.append(exc)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT)


def test_client_masks_every_length() -> None:
    payloads = [payload_of(n) for n in LENGTHS]
    peer = RawWebSocketServer()
    errors: list[BaseException] = []

    def client(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_OPEN:
            for payload in payloads:
                conn.ws_send(payload, WEBSOCKET_OP_BINARY)

    mgr = Manager(error_handler=errors.append)
    try:
        mgr.ws_connect(f"ws://127.0.0.1:{peer.port}/ws", client)
        poll_until(mgr, lambda: len(peer.frames) >= len(payloads) or bool(peer.failure))
    finally:
        mgr.close()
        peer.close()
    assert peer.failure == [] and errors == []
    assert [f.payload for f in peer.frames] == payloads
    assert all(f.masked for f in peer.frames)  # a client masks every frame (RFC 6455 5.1)


def test_server_frames_are_not_masked(echo_server: Server) -> None:
    sock, _, rest = upgrade(echo_server.port)
    with sock:
        sock.sendall(client_frame(FIN | OP_BINARY, b"0123456789abcdef"))
        frames, _ = read_frames(sock, 1, rest)
    assert frames[0].payload == b"0123456789abcdef"
    assert not frames[0].masked  # a server must not mask (RFC 6455 5.1)


@pytest.mark.parametrize("size", [0, 5, 8, 200, 70001])
def test_frames_arriving_a_byte_at_a_time(echo_server: Server, size: int) -> None:
    """Every cut of a frame's header reaches the unmasking code as an incomplete frame
    first (a 16- or 64-bit length form cut short has no key yet): nothing is read
    before the buffer (the sanitizer build checks), and the frame, once whole, echoes."""
    payload = payload_of(size)
    frame = client_frame(FIN | OP_BINARY, payload)
    sock, _, rest = upgrade(echo_server.port)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = 2 + 4 + (2 if 126 <= size < 65536 else 8 if size >= 65536 else 0)
        for i in range(head):
            sock.sendall(frame[i:i + 1])
            time.sleep(0.01)  # separate reads on the server's side
        sock.sendall(frame[head:])
        frames, _ = read_frames(sock, 1, rest)
    assert echo_server.errors == []
    assert [f.payload for f in frames] == [payload]

