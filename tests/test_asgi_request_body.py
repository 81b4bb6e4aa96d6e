"""Streamed request bodies in pymongoose.asgi: pieces as they arrive, never the whole body
at once, flow control for an application that reads slowly."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from asgi_helpers import TIMEOUT, running_asgi
from conftest import read_until_closed

from pymongoose import Limits
from pymongoose.asgi._http import HIGH_WATER

MIB = 1 << 20
#: Larger than Mongoose's own 64 MiB limit for a buffered body.
BIG = 80 * MIB


class HashingApp:
    """Hashes the body as it comes; answers "<sha256> <messages> <largest message>"."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        digest = hashlib.sha256()
        count = largest = 0
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            digest.update(message["body"])
            count += 1
            largest = max(largest, len(message["body"]))
            if not message["more_body"]:
                break
            if self.delay:
                await asyncio.sleep(self.delay)
        body = f"{digest.hexdigest()} {count} {largest}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def pattern(total: int, piece: int = MIB) -> Iterator[bytes]:
    block = bytes(range(256)) * (piece // 256)
    sent = 0
    while sent < total:
        part = block[:min(piece, total - sent)]
        sent += len(part)
        yield part


def expected_digest(total: int) -> str:
    digest = hashlib.sha256()
    for part in pattern(total):
        digest.update(part)
    return digest.hexdigest()


def test_chunked_upload_larger_than_mongoose_buffers_arrives_in_pieces() -> None:
    with running_asgi(HashingApp(), limits=Limits(max_body_size=BIG)) as srv:
        reply = requests.post(srv.url + "/upload", data=pattern(BIG), timeout=60)
    digest, count, largest = reply.text.split()
    assert digest == expected_digest(BIG)
    assert int(count) > 1
    assert int(largest) <= HIGH_WATER + 64 * 1024


def test_sized_upload_to_a_slow_reader_is_paused_not_buffered() -> None:
    total = 24 * MIB
    with running_asgi(HashingApp(delay=0.002), limits=Limits(max_body_size=total)) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % total)
        for part in pattern(total):
            sock.sendall(part)
        reply = read_until_closed(sock)
    digest, count, largest = reply.partition(b"\r\n\r\n")[2].decode().split()
    assert digest == expected_digest(total)
    # The app never got more than the high-water mark plus one piece at once: reading
    # paused while it was busy.
    assert int(largest) <= HIGH_WATER + 64 * 1024
    assert int(count) >= total // (HIGH_WATER + 64 * 1024)


@pytest.mark.parametrize("body", [b"", b"short body"])
def test_small_bodies_and_keep_alive_after_a_streamed_body(body: bytes) -> None:
    with running_asgi(HashingApp()) as srv, requests.Session() as session:
        for _ in range(3):
            reply = session.post(srv.url, data=body, timeout=TIMEOUT)
            digest, count, _largest = reply.text.split()
            assert digest == hashlib.sha256(body).hexdigest()
            assert count == "1"
        assert session.get(srv.url, timeout=TIMEOUT).status_code == 200


def test_expect_100_continue_and_bad_transfer_encoding() -> None:
    with running_asgi(HashingApp()) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n")
            sock.sendall(b"hello")
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200 OK")
            assert hashlib.sha256(b"hello").hexdigest().encode() in reply
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
            reply = sock.recv(65536)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 400")
        assert requests.get(srv.url, timeout=TIMEOUT).status_code == 200
