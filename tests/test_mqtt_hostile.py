"""Malformed MQTT sent over raw sockets to a broker made with Manager.mqtt_listen.

Each bad input must end in a clean close of that client's connection within a bounded
time, with no handler exception, and the broker must keep serving: after every case a
paho subscriber and publisher exchange a message through the same broker.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import TIMEOUT, BrokerServer, broker_thread, roundtrip, varint

#: The broker closes a client that leaves a CONNECT or a packet unfinished this long.
PACKET_TIMEOUT_MS = 300




def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def utf8(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


def connect(version: int = 4, flags: int = 0x02, payload: bytes = utf8(b"raw")) -> bytes:
    props = b"\x00" if version == 5 else b""
    return packet(0x10, utf8(b"MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
                  + props + payload)


def publish(topic: bytes, payload: bytes = b"x", first: int = 0x30) -> bytes:
    return packet(first, utf8(topic) + payload)


CONNACK_OK = b"\x20\x02\x00\x00"
# MQTT 5: no session present, success, Topic Alias Maximum (0x22) 10.
CONNACK_OK_V5 = b"\x20\x06\x00\x00\x03\x22\x00\x0a"

#: name -> (send a valid CONNECT first?, the bad bytes)
CASES: dict[str, tuple[bool, bytes]] = {
    "bad remaining-length varint": (False, b"\x10\xff\xff\xff\xff\x01"),
    "bad varint after CONNECT": (True, b"\x30\xff\xff\xff\xff\x7f"),
    "oversized length claim": (False, b"\x10\xff\xff\xff\x7f"),
    "oversized PUBLISH claim": (True, b"\x30\xff\xff\xff\x7f\x00\x01a"),
    "truncated CONNECT": (False, connect()[:9]),
    "truncated PUBLISH": (True, publish(b"a/b", b"payload")[:-3]),
    "truncated fixed header": (True, b"\x30\x80"),
    "nothing at all": (False, b""),
    "unknown packet type 0": (True, b"\x00\x00"),
    "AUTH on MQTT 3.1.1": (True, b"\xf0\x00"),
    "CONNACK from a client": (True, CONNACK_OK),
    "SUBACK from a client": (True, packet(0x90, b"\x00\x01\x00")),
    "PUBLISH before CONNECT": (False, publish(b"a", b"hi")),
    "SUBSCRIBE before CONNECT": (False, packet(0x82, b"\x00\x01" + utf8(b"a") + b"\x00")),
    "PINGREQ before CONNECT": (False, b"\xc0\x00"),
    "second CONNECT": (True, connect()),
    "protocol name MQTs": (False, packet(0x10, utf8(b"MQTs") + b"\x04\x02\x00\x3c"
                                         + utf8(b"x"))),
    "protocol level 3": (False, connect(version=3)),
    "CONNECT too short": (False, packet(0x10, b"\x00\x04MQ")),
    "CONNECT claims a username it lacks": (False, connect(flags=0x82)),
    "CONNECT with reserved flag": (False, connect(flags=0x03)),
    "CONNECT with invalid UTF-8 client id": (False, connect(payload=utf8(b"\xc3\x28"))),
    "topic with invalid UTF-8": (True, publish(b"\xff\xfe")),
    "topic with a UTF-16 surrogate": (True, publish(b"a\xed\xa0\x80")),
    "topic with an overlong encoding": (True, publish(b"\xc0\xaf")),
    "topic with NUL": (True, publish(b"a\x00b")),
    "topic cut inside a character": (True, publish(b"a\xe2\x82")),
    "zero-length topic": (True, publish(b"")),
    "topic longer than the packet": (True, packet(0x30, b"\x00\x09abc")),
    "wildcard in a PUBLISH topic": (True, publish(b"a/#")),
    "PUBLISH with QoS 3": (True, publish(b"a", b"\x00\x01x", first=0x36)),
    "QoS 1 PUBLISH without packet id": (True, packet(0x32, utf8(b"a"))),
    "SUBSCRIBE with flags 0": (True, packet(0x80, b"\x00\x01" + utf8(b"a") + b"\x00")),
    "SUBSCRIBE without filters": (True, packet(0x82, b"\x00\x01")),
    "SUBSCRIBE with a bad filter": (True, packet(0x82, b"\x00\x01" + utf8(b"a/#/b") + b"\x00")),
    "SUBSCRIBE with QoS 3": (True, packet(0x82, b"\x00\x01" + utf8(b"a") + b"\x03")),
    "SUBSCRIBE filter with invalid UTF-8": (True, packet(0x82, b"\x00\x01" + utf8(b"\xff")
                                                         + b"\x00")),
    "SUBSCRIBE filter longer than packet": (True, packet(0x82, b"\x00\x01\x00\x09ab\x00")),
    "UNSUBSCRIBE with a bad filter": (True, packet(0xA2, b"\x00\x01" + utf8(b"a+"))),
    "PINGREQ with flags": (True, b"\xc1\x00"),
    "DISCONNECT with flags": (True, b"\xe3\x00"),
}


@pytest.fixture(scope="module")
def server() -> Iterator[BrokerServer]:
    with broker_thread(timeout_ms=PACKET_TIMEOUT_MS) as running:
        yield running


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the broker sends until it closes the connection; fails on a deadline."""
    deadline = time.monotonic() + TIMEOUT
    received = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return received
        except socket.timeout:
            raise AssertionError(f"still open after {TIMEOUT} s; got {received!r}") from None
        if not chunk:
            return received
        received += chunk


def send_and_expect_close(port: int, connect_first: bool, bad: bytes,
                          version: int = 4) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        if connect_first:
            sock.sendall(connect(version))
            expected = CONNACK_OK_V5 if version == 5 else CONNACK_OK
            got = b""
            while len(got) < len(expected):
                chunk = sock.recv(len(expected) - len(got))
                assert chunk, "closed before CONNACK"
                got += chunk
            assert got == expected
        if bad:
            sock.sendall(bad)
        return read_until_closed(sock)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_closes_cleanly_and_broker_keeps_serving(server: BrokerServer,
                                                           name: str) -> None:
    connect_first, bad = CASES[name]
    received = send_and_expect_close(server.port, connect_first, bad)
    assert received == b"", "a refused client gets no reply to its bad packet"
    roundtrip(server.port, "".join(ch for ch in name if ch.isalnum()))
    assert server.errors == []


def test_mqtt5_publish_with_bad_property_length(server: BrokerServer) -> None:
    bad = publish(b"v5/topic", b"\x05ab")  # properties claim 5 bytes, 2 follow
    assert send_and_expect_close(server.port, True, bad, version=5) == b""
    roundtrip(server.port, "v5props")
    assert server.errors == []


def test_small_max_packet_size_is_enforced() -> None:
    with broker_thread(max_packet_size=64) as small:
        big = publish(b"big", b"x" * 100)
        assert send_and_expect_close(small.port, True, big) == b""
        roundtrip(small.port, "small")  # paho's packets fit in 64 bytes


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=64), connect_first=st.booleans())
def test_random_bytes_never_hurt_the_broker(server: BrokerServer, garbage: bytes,
                                            connect_first: bool) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        if connect_first:
            sock.sendall(connect())
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)  # then EOF: whatever was incomplete ends here
        read_until_closed(sock)
    assert server.errors == []


def test_broker_still_serves_after_the_random_bytes(server: BrokerServer) -> None:
    roundtrip(server.port, "after-fuzz")


def test_streaming_client_is_not_cut_off(server: BrokerServer) -> None:
    """Packets split across reads for longer than the packet timeout: each one completes
    in time, so the connection lives (the clock restarts with each packet)."""
    stream = b"".join(publish(b"stream/x", bytes([n]) * 10) for n in range(40))
    chunks = [stream[i:i + 7] for i in range(0, len(stream), 7)]  # never packet-aligned
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(connect())
        assert sock.recv(4) == CONNACK_OK
        started = time.monotonic()
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(0.05)  # pacing the sender, not waiting for the broker
        assert time.monotonic() - started > 3 * PACKET_TIMEOUT_MS / 1000
        sock.sendall(packet(0x32, utf8(b"stream/end") + b"\x00\x07" + b"done"))
        assert sock.recv(4) == b"\x40\x02\x00\x07"  # PUBACK: still connected
    assert server.errors == []


# -- a hostile broker: what our client does with garbage ---------------------------------

HOSTILE_REPLIES: dict[str, bytes] = {
    "oversized length claim": CONNACK_OK + b"\x30\xff\xff\xff\x7f",
    "bad remaining-length varint": CONNACK_OK + b"\x30\xff\xff\xff\xff\x01",
    "PUBLISH with QoS 3": CONNACK_OK + publish(b"a", b"\x00\x01x", first=0x36),
    "PUBLISH topic longer than packet": CONNACK_OK + packet(0x30, b"\x00\x09abc"),
    "CONNACK too short": b"\x20\x01\x00",
}


def fake_broker(server_sock: socket.socket, reply: bytes, saw: list[bytes]) -> None:
    """Accept one client, read the first byte of its CONNECT, answer ``reply``."""
    server_sock.settimeout(TIMEOUT)
    peer, _ = server_sock.accept()
    with peer:
        peer.settimeout(TIMEOUT)
        saw.append(peer.recv(1))
        peer.sendall(reply)
        read_until_closed(peer)


@pytest.mark.parametrize("name", list(HOSTILE_REPLIES))
def test_client_closes_on_garbage_from_the_broker(name: str) -> None:
    import threading

    from mqtt_helpers import poll_until

    from pymongoose import MG_EV_CLOSE, MG_EV_ERROR, MG_EV_MQTT_MSG, Connection, Manager

    errors: list[str] = []
    messages: list[bytes] = []
    closed: list[bool] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_ERROR:
            errors.append(data)
        elif ev == MG_EV_MQTT_MSG:
            messages.append(data.data)
        elif ev == MG_EV_CLOSE:
            closed.append(True)

    with socket.socket() as server_sock:
        server_sock.bind(("127.0.0.1", 0))
        server_sock.listen(1)
        saw: list[bytes] = []
        thread = threading.Thread(target=fake_broker, daemon=True,
                                  args=(server_sock, HOSTILE_REPLIES[name], saw))
        thread.start()
        with Manager() as mgr:
            mgr.mqtt_connect(f"mqtt://127.0.0.1:{server_sock.getsockname()[1]}", handler)
            poll_until(mgr, lambda: closed, what="the client to close")
        thread.join(TIMEOUT)
    assert saw == [b"\x10"]  # it did send CONNECT
    assert messages == []
    assert errors and errors[0].startswith("MQTT: "), errors


def test_silent_client_is_closed_after_one_and_a_half_keepalives(server: BrokerServer) -> None:
    one_second = packet(0x10, utf8(b"MQTT") + b"\x04\x02" + struct.pack("!H", 1)
                        + utf8(b"sleepy"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(one_second)
        assert sock.recv(4) == CONNACK_OK
        assert read_until_closed(sock) == b""  # within TIMEOUT, though it sent nothing bad
    roundtrip(server.port, "sleepy")


def test_pinging_client_outlives_its_keepalive(server: BrokerServer) -> None:
    one_second = packet(0x10, utf8(b"MQTT") + b"\x04\x02" + struct.pack("!H", 1)
                        + utf8(b"awake"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(one_second)
        assert sock.recv(4) == CONNACK_OK
        for _ in range(6):  # 3 s, twice the allowance, in pings every half second
            time.sleep(0.5)  # pacing the client, not waiting for the broker
            sock.sendall(b"\xc0\x00")
            assert sock.recv(2) == b"\xd0\x00"  # PINGRESP: still served
