"""Hostile TLS input: garbage records, truncated and mutated ClientHellos, plain text
to the HTTPS port, peers that vanish mid-handshake, garbage after the handshake, and
garbage servers for our client.

Each bad connection must be closed within a bounded time (the server's handshake
deadline is 1 s here), and the server must keep serving: every test ends with a
normal HTTPS request.
"""

from __future__ import annotations

import queue
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest
import requests
from conftest import Server, serving
from tls_helpers import Certs, certs, client_hello, https_get

from pymongoose import MG_EV_CLOSE, MG_EV_ERROR, MG_EV_HTTP_MSG, Connection, Manager, TlsOpts

__all__ = ["certs"]  # the session fixture, imported from tls_helpers

#: How long a bad connection may stay open: the 1 s deadline, checked once a second,
#: plus slack for a busy machine.
CLOSE_WITHIN = 15.0


def hello(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "still here")


@pytest.fixture
def server(certs: Certs) -> Iterator[Server]:
    with serving(hello, "https://127.0.0.1:0",
                 tls=certs.server_opts(handshake_timeout=1.0)) as running:
        yield running
        assert running.errors == []


def still_serving(server: Server, certs: Certs) -> None:
    response = https_get(f"https://127.0.0.1:{server.port}/", verify=str(certs.ca),
                            timeout=CLOSE_WITHIN)
    assert response.text == "still here"


def wait_closed(sock: socket.socket) -> bytes:
    """Read until the server closes ``sock``; what it sent (an alert, perhaps)."""
    sock.settimeout(CLOSE_WITHIN)
    received = b""
    deadline = time.monotonic() + CLOSE_WITHIN
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except socket.timeout:
            break
        if not chunk:
            return received
        received += chunk
    pytest.fail(f"the server kept the connection open for {CLOSE_WITHIN} s")


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=CLOSE_WITHIN)


def record(content_type: int, body: bytes, version: bytes = b"\x03\x03") -> bytes:
    return bytes([content_type]) + version + struct.pack(">H", len(body)) + body


GARBAGE = {
    "random bytes": random.Random(1).randbytes(1000),
    "all 0xff": b"\xff" * 300,
    "all zero": b"\x00" * 300,
    "handshake record, not a ClientHello": record(22, b"\x02\x00\x00\x01\x00"),
    "empty handshake record": record(22, b""),
    "ClientHello claiming no body": record(22, b"\x01\x00\x00\x00"),
    "ClientHello, 3 bytes": record(22, b"\x01\x00\x00"),
    "application data first": record(23, bytes(64)),
    "alert first": record(21, b"\x02\x28"),
    "change cipher spec first": record(20, b"\x01"),
    "unknown content type": record(99, b"hello"),
    "SSLv2-style hello": b"\x80\x2e\x01\x00\x02\x00\x15" + bytes(46),
    "oversized record length": b"\x16\x03\x01\xff\xff" + bytes(20000),
    "many tiny records": b"".join(record(22, b"\x01") for _ in range(200)),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_records_close_the_connection(server: Server, certs: Certs, name: str) -> None:
    with connect(server) as sock:
        sock.sendall(GARBAGE[name])
        wait_closed(sock)
    still_serving(server, certs)


def test_truncated_client_hello_times_out(server: Server, certs: Certs) -> None:
    hello_bytes = client_hello()
    with connect(server) as first, connect(server) as second:
        first.sendall(hello_bytes[:40])  # the record header promises more
        second.sendall(hello_bytes[:3])  # not even a record header
        still_serving(server, certs)  # meanwhile others are served
        wait_closed(first)
        wait_closed(second)
    still_serving(server, certs)


def test_silent_client_times_out(server: Server, certs: Certs) -> None:
    with connect(server) as sock:
        wait_closed(sock)
    still_serving(server, certs)


def test_plain_http_to_the_https_port(server: Server, certs: Certs) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = wait_closed(sock)
    assert b"still here" not in received
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{server.port}/", timeout=CLOSE_WITHIN)
    still_serving(server, certs)


def test_clients_vanishing_mid_handshake(certs: Certs) -> None:
    closed: queue.Queue[int] = queue.Queue()  # remote ports of closed connections

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CLOSE and conn.remote_addr is not None:
            closed.put(conn.remote_addr[1])
        hello(conn, ev, data)

    hello_bytes = client_hello()
    with serving(handler, "https://127.0.0.1:0",
                 tls=certs.server_opts(handshake_timeout=1.0)) as server:
        ports = set()
        for step in range(4):
            sock = connect(server)
            ports.add(sock.getsockname()[1])
            if step == 0:
                sock.sendall(hello_bytes[:20])
            elif step == 1:
                sock.sendall(hello_bytes)
            elif step == 2:  # wait for the server's first flight, then leave
                sock.sendall(hello_bytes)
                assert sock.recv(5)[:1] == b"\x16"
            else:  # abortive close: RST instead of FIN
                sock.sendall(hello_bytes)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        # Each of them is closed on the server's side too.
        deadline = time.monotonic() + CLOSE_WITHIN
        while ports and time.monotonic() < deadline:
            try:
                ports.discard(closed.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        assert not ports, f"still open on the server: {ports}"
        still_serving(server, certs)
        assert server.errors == []


def test_mutated_client_hellos(server: Server, certs: Certs) -> None:
    hello_bytes = client_hello()
    rng = random.Random(7)
    sockets = []
    for _ in range(60):
        data = bytearray(hello_bytes)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(5, len(data))]
        sock = connect(server)
        sock.sendall(bytes(data))
        sockets.append(sock)
    try:
        for sock in sockets:
            # A mutation may leave a valid hello: then the server answers and waits for
            # the client's Finished, which never comes: the deadline closes it too.
            wait_closed(sock)
    finally:
        for sock in sockets:
            sock.close()
    still_serving(server, certs)


def handshake_over(sock: socket.socket, certs: Certs) -> tuple[ssl.SSLObject, ssl.MemoryBIO]:
    """A TLS 1.3 handshake with Python's ssl over ``sock``, by hand (MemoryBIO)."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "server closed during the handshake"
            incoming.write(data)
    sock.sendall(outgoing.read())  # the client's Finished
    assert tls.version() == "TLSv1.3"
    return tls, outgoing


def connect_tls(server: Server,
                certs: Certs) -> tuple[socket.socket, ssl.SSLObject, ssl.MemoryBIO]:
    """A new connection to ``server`` with the handshake done (closed if it fails)."""
    sock = connect(server)
    try:
        return (sock, *handshake_over(sock, certs))
    except BaseException:
        sock.close()
        raise


@pytest.mark.parametrize("garbage", [
    record(23, random.Random(3).randbytes(64)),  # fails authentication
    record(23, b""),
    record(22, bytes(40)),
    # Plain text after the handshake: "GET " reads as a record of 0x202f bytes, so
    # send that many (a partial record just waits, as a partial request does).
    b"GET / HTTP/1.1\r\n" + b"X" * 0x2100,
], ids=["unauthentic-data", "empty-data", "cleartext-handshake", "plain-text"])
def test_garbage_after_the_handshake(server: Server, certs: Certs, garbage: bytes) -> None:
    sock, tls, outgoing = connect_tls(server, certs)
    with sock:
        tls.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.sendall(outgoing.read())
        assert sock.recv(65536)  # the encrypted answer
        sock.sendall(garbage)
        wait_closed(sock)
    still_serving(server, certs)


# -- our client against hostile servers -------------------------------------------------


@pytest.fixture
def garbage_server() -> Iterator[tuple[int, list[Optional[bytes]]]]:
    """A TCP server answering each connection with the next reply in the list (then
    keeping it open until the client leaves; None: closing it at once)."""
    replies: list[Optional[bytes]] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(CLOSE_WITHIN)
                try:
                    conn.recv(65536)  # the ClientHello
                    reply = replies.pop(0) if replies else b""
                    if reply is None:
                        continue
                    conn.sendall(reply)
                    while conn.recv(65536):
                        pass
                except OSError:
                    continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], replies
    finally:
        stop.set()
        socket.create_connection(sock.getsockname(), timeout=CLOSE_WITHIN).close()  # wake accept()
        sock.close()
        thread.join(timeout=CLOSE_WITHIN)


@pytest.mark.parametrize("reply", [
    b"",  # says nothing
    random.Random(5).randbytes(500),
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",  # a plain-text server
    record(22, b"\x02\x00\x00\x04\x03\x03\x00\x00"),  # a ServerHello with nothing in it
    record(21, b"\x02\x28"),  # handshake_failure alert
    b"\x16\x03\x03\xff\xff" + bytes(100),  # a record that never completes
    None,  # hangs up at once
], ids=["silent", "random", "plain-http", "empty-server-hello", "alert", "endless-record",
        "hang-up"])
def test_our_client_against_a_garbage_server(
        garbage_server: tuple[int, list[Optional[bytes]]], certs: Certs,
        reply: Optional[bytes]) -> None:
    port, replies = garbage_server
    replies.append(reply)
    events: list[Any] = []

    def client(conn: Connection, ev: int, data: Any) -> None:
        if ev in (MG_EV_ERROR, MG_EV_CLOSE, MG_EV_HTTP_MSG):
            events.append((ev, data if ev == MG_EV_ERROR else None))

    with Manager() as mgr:
        conn = mgr.connect(f"https://127.0.0.1:{port}/", client,
                           tls=TlsOpts(ca=certs.ca.read_bytes(), handshake_timeout=1.0))
        conn.send(b"GET / HTTP/1.1\r\n\r\n")
        deadline = time.monotonic() + CLOSE_WITHIN
        while not conn.is_closed and time.monotonic() < deadline:
            mgr.poll(20)
        assert conn.is_closed, f"still open after {CLOSE_WITHIN} s: {events}"
    assert all(ev != MG_EV_HTTP_MSG for ev, _ in events)
    assert events[-1] == (MG_EV_CLOSE, None)
    errors = [text for ev, text in events if ev == MG_EV_ERROR]
    assert errors, "the client closed without saying why"
    assert all(text.startswith("TLS handshake failed: ") or text == "TLS handshake timed out"
               for text in errors), errors
    if reply is None:
        assert errors == ["TLS handshake failed: the server closed the connection"]
