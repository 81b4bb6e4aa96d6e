"""WebSocket frames by hand (RFC 6455 section 5), for tests that talk raw sockets.

``client_frame`` builds what a client sends (masked), ``read_frames`` reads what the
server answers until it closes the connection, ``upgrade`` opens a session on a plain
socket, optionally offering extensions.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from typing import Optional

FIN, RSV1, RSV2, RSV3 = 0x80, 0x40, 0x20, 0x10
OP_CONTINUE, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
TIMEOUT = 10.0


def client_frame(first_byte: int, payload: bytes = b"", *, mask: Optional[bytes] = None) -> bytes:
    """A masked client frame; ``first_byte`` holds FIN, the RSV bits and the opcode."""
    mask = os.urandom(4) if mask is None else mask
    size = len(payload)
    if size < 126:
        head = bytes([first_byte, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first_byte, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first_byte, 0x80 | 127]) + struct.pack("!Q", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """The payload of a CLOSE frame with status ``code``."""
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    """A frame the server sent."""

    first_byte: int
    payload: bytes
    masked: bool = False  # it came masked (a client's frame), unmasked here

    @property
    def op(self) -> int:
        return self.first_byte & 0x0F

    @property
    def fin(self) -> bool:
        return bool(self.first_byte & FIN)

    @property
    def rsv1(self) -> bool:
        return bool(self.first_byte & RSV1)

    @property
    def close_code(self) -> Optional[int]:
        """The status code of a CLOSE frame (None when it carries none)."""
        assert self.op == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def parse_frames(raw: bytes) -> tuple[list[Frame], bytes]:
    """The complete frames at the start of ``raw``, and the bytes after them."""
    frames, at = [], 0
    while len(raw) - at >= 2:
        b0, b1 = raw[at], raw[at + 1]
        size, pos = b1 & 0x7F, at + 2
        if size == 126:
            if len(raw) - pos < 2:
                break
            size, pos = struct.unpack_from("!H", raw, pos)[0], pos + 2
        elif size == 127:
            if len(raw) - pos < 8:
                break
            size, pos = struct.unpack_from("!Q", raw, pos)[0], pos + 8
        mask = b""
        if b1 & 0x80:
            mask, pos = raw[pos:pos + 4], pos + 4
        if len(raw) - pos < size:
            break
        payload = raw[pos:pos + size]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frames.append(Frame(b0, payload, bool(mask)))
        at = pos + size
    return frames, raw[at:]


def upgrade(port: int, extensions: Optional[str] = None, path: str = "/ws",
            ) -> tuple[socket.socket, bytes, bytes]:
    """Open a WebSocket session: the socket, the 101 response head, and the bytes
    already read after it. ``extensions``: a Sec-WebSocket-Extensions offer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    extra = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions is not None else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 f"Sec-WebSocket-Version: 13\r\n{extra}\r\n".encode("latin-1"))
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise AssertionError(f"the server closed during the handshake: {raw!r}")
        raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise AssertionError(f"no upgrade: {head!r}")
    return sock, head, rest


def response_header(head: bytes, name: str) -> list[str]:
    """Every value of header ``name`` in a response head."""
    wanted = name.lower().encode("latin-1")
    values = []
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == wanted:
            values.append(value.strip().decode("latin-1"))
    return values


def read_frames_until_closed(sock: socket.socket, already: bytes = b"") -> list[Frame]:
    """Every frame the server sends until it closes the connection (a reset counts as
    a close). Raises socket.timeout when it keeps the connection open."""
    raw = bytearray(already)
    try:
        while chunk := sock.recv(65536):
            raw += chunk
    except ConnectionResetError:
        pass
    return parse_frames(bytes(raw))[0]


def read_frames(sock: socket.socket, count: int, already: bytes = b"") -> tuple[list[Frame], bytes]:
    """The frames that arrived until there were at least ``count`` (fewer if the server
    closed first), and the bytes after them."""
    raw = bytearray(already)
    while True:
        frames, rest = parse_frames(bytes(raw))
        if len(frames) >= count:
            return frames, rest
        chunk = sock.recv(65536)
        if not chunk:
            return frames, rest
        raw += chunk
