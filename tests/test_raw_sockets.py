"""Raw TCP and UDP: echo servers driven by Python sockets, and our own TCP client."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from conftest import Server

from pymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_READ,
    Connection,
    Manager,
)

TIMEOUT = 10.0

Record = tuple[Any, ...]


def echo_handler(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_READ:
        conn.send(conn.recv_data(consume=True))


def expect(records: queue.Queue[Record], kind: str) -> Record:
    """The next record of ``kind`` on ``records``, skipping others."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"never saw {kind!r}")
        try:
            record = records.get(timeout=remaining)
        except queue.Empty:
            continue
        if record[0] == kind:
            return record


def poll_until(mgr: Manager, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        mgr.poll(20)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def tcp_client(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)


@pytest.fixture
def tcp_echo(serve: Callable[..., Any]) -> Iterator[Server]:
    with serve(echo_handler, "tcp://127.0.0.1:0") as server:
        yield server
        assert server.errors == []


# -- TCP --------------------------------------------------------------------------------


def test_tcp_listener_is_raw_and_on_the_port_it_reports(tcp_echo: Server) -> None:
    listener = tcp_echo.listener
    assert listener.is_listening
    assert not listener.is_udp
    assert listener.local_addr == ("127.0.0.1", tcp_echo.port, False)
    assert tcp_echo.port > 0


def test_tcp_small_message_is_echoed(tcp_echo: Server) -> None:
    with tcp_client(tcp_echo) as sock:
        sock.sendall(b"hello, mongoose\n")
        assert recv_exactly(sock, 16) == b"hello, mongoose\n"
        # Nothing that looks like HTTP is added: the listener is raw TCP.
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert recv_exactly(sock, 18) == b"GET / HTTP/1.1\r\n\r\n"


def test_tcp_one_megabyte_streamed_in_chunks_comes_back_intact(tcp_echo: Server) -> None:
    payload = bytes((i * 31 + i // 251) % 256 for i in range(1 << 20))
    with tcp_client(tcp_echo) as sock:
        # Send from a thread: the echo flows back while we are still sending.
        def send_all() -> None:
            for start in range(0, len(payload), 8192):
                sock.sendall(payload[start:start + 8192])

        sender = threading.Thread(target=send_all)
        sender.start()
        try:
            echoed = recv_exactly(sock, len(payload))
        finally:
            sender.join(TIMEOUT)
    assert len(echoed) == len(payload)
    assert echoed == payload


def test_tcp_several_concurrent_clients_each_get_their_own_bytes(tcp_echo: Server) -> None:
    results: dict[int, bytes] = {}
    failures: list[BaseException] = []

    def talk(n: int) -> None:
        try:
            message = f"client {n} ".encode() * (500 + n * 100)
            with tcp_client(tcp_echo) as sock:
                sock.sendall(message)
                results[n] = recv_exactly(sock, len(message))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert failures == []
    assert sorted(results) == list(range(8))
    for n, echoed in results.items():
        assert echoed == f"client {n} ".encode() * (500 + n * 100)


def test_tcp_sockets_open_at_the_same_time_are_kept_apart(tcp_echo: Server) -> None:
    socks = [tcp_client(tcp_echo) for _ in range(5)]
    try:
        for n, sock in enumerate(socks):
            sock.sendall(b"first %d;" % n)
        for n, sock in reversed(list(enumerate(socks))):
            sock.sendall(b"second %d;" % n)
        for n, sock in enumerate(socks):
            expected = b"first %d;second %d;" % (n, n)
            assert recv_exactly(sock, len(expected)) == expected
    finally:
        for sock in socks:
            sock.close()


def test_accepted_connection_addresses_repr_and_close(serve: Callable[..., Any]) -> None:
    records: queue.Queue[Record] = queue.Queue()
    kept: list[Connection] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            kept.append(conn)
            records.put(("accept", conn.local_addr, conn.remote_addr, repr(conn),
                         conn.is_client, conn.is_listening, conn.is_udp))
        elif ev == MG_EV_READ:
            conn.send(conn.recv_data(consume=True))
        elif ev == MG_EV_CLOSE:
            records.put(("close", conn.id))

    with serve(handler, "tcp://127.0.0.1:0") as server, tcp_client(server) as sock:
        _, local, remote, text, is_client, is_listening, is_udp = expect(records, "accept")
        client_ip, client_port = sock.getsockname()
        assert local == ("127.0.0.1", server.port, False)
        assert remote == (client_ip, client_port, False)
        assert not is_client and not is_listening and not is_udp
        conn = kept[0]
        assert f"id={conn.id}" in text
        assert "accepted" in text and "tcp" in text
        assert f"127.0.0.1:{server.port}" in text and f"{client_ip}:{client_port}" in text
        listener_text = repr(server.listener)
        assert "listening" in listener_text and f"127.0.0.1:{server.port}" in listener_text

        sock.close()
        assert expect(records, "close") == ("close", conn.id)
        # The record is made inside the MG_EV_CLOSE handler; the wrapper is detached on
        # the server's thread just after the handler returns.
        deadline = time.monotonic() + TIMEOUT
        while not conn.is_closed and time.monotonic() < deadline:
            time.sleep(0.005)
        assert conn.is_closed
        assert conn.local_addr is None and conn.remote_addr is None
        assert repr(conn) == f"<Connection id={conn.id} closed>"


def test_drain_sends_everything_then_closes(serve: Callable[..., Any]) -> None:
    """A reply far larger than the socket buffers still arrives whole before EOF."""
    size = 4 << 20
    records: queue.Queue[Record] = queue.Queue()

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_READ and conn.recv_data(consume=True) == b"go":
            conn.send(bytes(range(256)) * (size // 256))
            conn.drain()
            records.put(("drain", conn.is_draining, conn.is_closing, conn.send_len))
        elif ev == MG_EV_CLOSE:
            records.put(("close", conn.id))

    with serve(handler, "tcp://127.0.0.1:0") as server, tcp_client(server) as sock:
        sock.sendall(b"go")
        _, is_draining, is_closing, queued = expect(records, "drain")
        assert is_draining and not is_closing
        assert queued == size
        received = recv_until_eof(sock)
        assert len(received) == size
        assert received == bytes(range(256)) * (size // 256)
        expect(records, "close")


def test_our_tcp_client_against_our_server(tcp_echo: Server) -> None:
    got: list[Record] = []

    def client(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            got.append(("connect", conn.is_client, conn.remote_addr))
            conn.send("ping ✓")
        elif ev == MG_EV_READ:
            got.append(("read", conn.recv_data(consume=True), conn.recv_len))
        elif ev == MG_EV_ERROR:
            got.append(("error", data))
        elif ev == MG_EV_CLOSE:
            got.append(("close",))

    with Manager() as mgr:
        conn = mgr.connect(f"tcp://127.0.0.1:{tcp_echo.port}", client)
        assert conn.is_client
        poll_until(mgr, lambda: any(r[0] in ("read", "error") for r in got))
        assert got == [
            ("connect", True, ("127.0.0.1", tcp_echo.port, False)),
            ("read", "ping ✓".encode(), 0),
        ]
        conn.close()
        poll_until(mgr, lambda: ("close",) in got)
        assert conn.is_closed
        assert conn not in mgr.connections


# -- UDP --------------------------------------------------------------------------------


@pytest.fixture
def udp_echo(serve: Callable[..., Any]) -> Iterator[tuple[Server, queue.Queue[Record]]]:
    records: queue.Queue[Record] = queue.Queue()

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_READ:
            records.put(("read", conn.is_udp, conn.remote_addr))
            conn.send(conn.recv_data(consume=True))

    with serve(handler, "udp://127.0.0.1:0") as server:
        yield server, records
        assert server.errors == []


def udp_client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def test_udp_listener_is_udp(udp_echo: tuple[Server, queue.Queue[Record]]) -> None:
    server, _ = udp_echo
    assert server.listener.is_udp
    assert server.listener.local_addr == ("127.0.0.1", server.port, False)
    assert "udp" in repr(server.listener)


def test_udp_datagrams_are_echoed_to_their_sender(
        udp_echo: tuple[Server, queue.Queue[Record]]) -> None:
    server, records = udp_echo
    with udp_client() as sock:
        for payload in (b"one", b"\x00\xff" * 100, "żółw".encode()):
            sock.sendto(payload, ("127.0.0.1", server.port))
            echoed, sender = sock.recvfrom(65536)
            assert echoed == payload
            assert sender == ("127.0.0.1", server.port)
        _, is_udp, remote = expect(records, "read")
        assert is_udp
        assert remote == ("127.0.0.1", sock.getsockname()[1], False)


def test_udp_echo_goes_back_to_whichever_client_sent(
        udp_echo: tuple[Server, queue.Queue[Record]]) -> None:
    server, _ = udp_echo
    with udp_client() as first, udp_client() as second:
        for round_ in range(3):
            first.sendto(b"first %d" % round_, ("127.0.0.1", server.port))
            assert first.recvfrom(65536)[0] == b"first %d" % round_
            second.sendto(b"second %d" % round_, ("127.0.0.1", server.port))
            assert second.recvfrom(65536)[0] == b"second %d" % round_
