"""WebSocket frames that arrive in the same TCP segment as the upgrade request are
delivered in the poll that handles the upgrade, not whenever more data comes.

The client here is a raw socket, so that the request and the frames go out in one
sendall(); the server is polled by the test itself, one poll at a time.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from typing import Any

import pytest

from pymongoose import (
    MG_EV_HTTP_MSG,
    MG_EV_WS_MSG,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_TEXT,
    Connection,
    Manager,
)

TIMEOUT = 10.0

def port_of(conn: Connection) -> int:
    """The port a listener was given (port 0 asks for a free one)."""
    addr = conn.local_addr
    assert addr is not None
    return addr[1]


def upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    return (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii")


def client_frame(payload: bytes, op: int, mask: bytes) -> bytes:
    """One final, masked client frame (payload under 126 bytes)."""
    assert len(payload) < 126 and len(mask) == 4
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | op, 0x80 | len(payload)) + mask + masked


class Recorder:
    """Upgrades every request; records messages and echoes them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
            self.events.append(("upgraded", data.uri))
        elif ev == MG_EV_WS_MSG:
            self.events.append(("message", (data.op, data.data)))
            conn.ws_send(data.data, data.op)


def read_frames(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Skip the 101 response, then read ``count`` unmasked server frames."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101")
    frames: list[tuple[int, bytes]] = []
    while len(frames) < count:
        if len(buf) >= 2 and len(buf) >= 2 + buf[1]:
            size = buf[1]
            frames.append((buf[0] & 0x0F, buf[2:2 + size]))
            buf = buf[2 + size:]
            continue
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        buf += chunk
    return frames


# Zero mask: the frame bytes look like text. The other: they hold control characters,
# which Mongoose's HTTP parser, reading them as a next request, calls an error.
MASKS = [b"\x00\x00\x00\x00", b"\x01\x02\x03\x04", os.urandom(4)]


@pytest.mark.parametrize("mask", MASKS, ids=["zero-mask", "control-bytes", "random-mask"])
def test_frames_in_the_upgrade_segment_are_delivered_in_the_same_poll(mask: bytes) -> None:
    recorder = Recorder()
    with Manager(recorder) as mgr:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(upgrade_request(port)
                         + client_frame(b"first", WEBSOCKET_OP_TEXT, mask)
                         + client_frame(b"\x00\x01second", WEBSOCKET_OP_BINARY, mask))
            polls = 0
            while not recorder.events:
                mgr.poll(100)
                polls += 1
                assert polls < 100, "the upgrade request never arrived"
            # The poll that handled the upgrade also handled the frames behind it.
            assert recorder.events == [
                ("upgraded", "/ws"),
                ("message", (WEBSOCKET_OP_TEXT, b"first")),
                ("message", (WEBSOCKET_OP_BINARY, b"\x00\x01second")),
            ]
            for _ in range(3):  # the echoes go out within the next polls
                mgr.poll(0)
            assert read_frames(sock, 2) == [(WEBSOCKET_OP_TEXT, b"first"),
                                            (WEBSOCKET_OP_BINARY, b"\x00\x01second")]


def test_a_later_frame_is_still_delivered_as_usual() -> None:
    recorder = Recorder()
    with Manager(recorder) as mgr:
        port = port_of(mgr.listen("http://127.0.0.1:0"))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(upgrade_request(port))
            while not recorder.events:
                mgr.poll(100)
            assert recorder.events == [("upgraded", "/ws")]
            sock.sendall(client_frame(b"later", WEBSOCKET_OP_TEXT, b"\x05\x06\x07\x08"))
            polls = 0
            while len(recorder.events) < 2:
                mgr.poll(100)
                polls += 1
                assert polls < 100, "the frame never arrived"
            assert recorder.events[1] == ("message", (WEBSOCKET_OP_TEXT, b"later"))
