"""UDP send(): datagrams over Mongoose's 16384-byte MG_IO_SIZE are refused with a
ValueError, a failed sendto() is an OSError carrying its errno (not a MemoryError), and
a longer datagram received is cut to 16384 bytes, as the README says.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest

from pymongoose import MG_EV_CLOSE, MG_EV_READ, Connection, Manager
from pymongoose.connection import UDP_DATAGRAM_MAX

TIMEOUT = 10.0

def port_of(conn: Connection) -> int:
    """The port a listener was given (port 0 asks for a free one)."""
    addr = conn.local_addr
    assert addr is not None
    return addr[1]


def poll_until(mgr: Manager, done: Any, what: str) -> None:
    for _ in range(200):
        if done():
            return
        mgr.poll(50)
    pytest.fail(f"{what} did not happen")


@pytest.fixture
def receiver() -> Any:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    yield sock
    sock.close()


def test_the_limit_is_mongooses_io_size() -> None:
    assert UDP_DATAGRAM_MAX == 16384


def test_a_datagram_at_the_limit_goes_out_whole(receiver: socket.socket) -> None:
    with Manager() as mgr:
        conn = mgr.connect(f"udp://127.0.0.1:{receiver.getsockname()[1]}")
        payload = bytes(range(256)) * (UDP_DATAGRAM_MAX // 256)
        conn.send(payload)
        assert receiver.recv(65536) == payload


def test_a_datagram_over_the_limit_is_refused_and_nothing_is_sent(
        receiver: socket.socket) -> None:
    with Manager() as mgr:
        conn = mgr.connect(f"udp://127.0.0.1:{receiver.getsockname()[1]}")
        with pytest.raises(ValueError, match=r"16385 bytes .* 16384-byte limit"):
            conn.send(b"x" * (UDP_DATAGRAM_MAX + 1))
        assert not conn.is_closing
        conn.send(b"after")  # the connection is still usable, and only this arrived
        assert receiver.recv(65536) == b"after"


def test_tcp_sends_are_not_limited() -> None:
    with Manager() as mgr:
        listener = mgr.listen("tcp://127.0.0.1:0")
        conn = mgr.connect(f"tcp://127.0.0.1:{port_of(listener)}")
        conn.send(b"x" * (4 * UDP_DATAGRAM_MAX))
        assert conn.send_len == 4 * UDP_DATAGRAM_MAX


def test_a_failed_sendto_is_an_oserror_with_errno_and_closes_the_connection() -> None:
    closed: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CLOSE:
            closed.append(conn.id)

    with Manager(handler) as mgr:
        conn = mgr.connect("udp://127.0.0.1:0")  # port 0: the kernel refuses to send there
        with pytest.raises(OSError) as caught:
            conn.send(b"ping")
        assert not isinstance(caught.value, MemoryError)
        assert caught.value.errno == errno.EINVAL
        assert "sending the UDP datagram failed" in str(caught.value)
        # Mongoose marks the connection closing; MG_EV_CLOSE follows at the next poll.
        assert conn.is_closing
        poll_until(mgr, lambda: closed == [conn.id], "MG_EV_CLOSE")


def test_a_received_datagram_over_the_limit_is_cut_to_it() -> None:
    received: list[bytes] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_READ:
            received.append(conn.recv_data(consume=True))

    with Manager(handler) as mgr:
        port = port_of(mgr.listen("udp://127.0.0.1:0"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"a" * UDP_DATAGRAM_MAX + b"b" * 1000, ("127.0.0.1", port))
            sender.sendto(b"next", ("127.0.0.1", port))
        poll_until(mgr, lambda: len(received) >= 2, "two reads")
    assert received == [b"a" * UDP_DATAGRAM_MAX, b"next"]


def test_sending_before_the_host_name_is_resolved_says_so() -> None:
    # A DNS server that never answers keeps the name unresolved.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dns:
        dns.bind(("127.0.0.1", 0))
        with Manager(dns_server=f"udp://127.0.0.1:{dns.getsockname()[1]}") as mgr:
            conn = mgr.connect("udp://example.invalid:9")
            with pytest.raises(OSError, match="still being resolved") as caught:
                conn.send(b"too early")
            assert caught.value.errno == errno.EBADF
            assert conn.is_closing
