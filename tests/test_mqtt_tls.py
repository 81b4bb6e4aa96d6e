"""MQTT over TLS (mqtts://): our client against mosquitto, paho-mqtt and our own client
against our MqttBroker, and hostile input to an mqtts listener.

The test PKI comes from tls_helpers (EC P-256 certificates made with the openssl CLI).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import read_until_closed
from mqtt_helpers import (
    TIMEOUT,
    BrokerServer,
    Mosquitto,
    broker_thread,
    mosquitto,
    poll_until,
    roundtrip,
    tls_config,
)
from tls_helpers import Certs, certs

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_MQTT_MSG,
    MG_EV_MQTT_OPEN,
    Connection,
    Manager,
    TlsOpts,
)
from pymongoose.aio import AsyncManager

__all__ = ["certs"]  # the session fixture, imported from tls_helpers


class Client:
    """What one MQTT client connection saw; subscribes and publishes once it is accepted."""

    def __init__(self, topic: str = "", payload: bytes = b"") -> None:
        self.topic = topic
        self.payload = payload
        self.opened: list[int] = []
        self.messages: list[tuple[str, bytes, int]] = []
        self.errors: list[str] = []
        self.was_tls: list[bool] = []
        self.closed = False

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_MQTT_OPEN:
            self.opened.append(data)
            self.was_tls.append(conn.is_tls)
            if self.topic and data == 0:
                conn.mqtt_sub(self.topic, qos=1)
                conn.mqtt_pub(self.topic, self.payload, qos=1)
        elif ev == MG_EV_MQTT_MSG:
            self.messages.append((data.topic, data.data, data.qos))
        elif ev == MG_EV_ERROR:
            self.errors.append(data)
        elif ev == MG_EV_CLOSE:
            self.closed = True


@pytest.fixture
def tls_broker(tmp_path: Path, certs: Certs) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path, tls_config(certs.ca, certs.server_crt, certs.server_key)) as m:
        yield m


#: Seconds our broker gives a handshake: garbage that looks like the start of a TLS
#: record is closed after this long.
HANDSHAKE_TIMEOUT = 2.0


@pytest.fixture
def our_broker(certs: Certs) -> Iterator[BrokerServer]:
    tls = certs.server_opts(handshake_timeout=HANDSHAKE_TIMEOUT)
    with broker_thread("mqtts://127.0.0.1:0", tls=tls) as server:
        yield server


def run_client(url: str, tls: Optional[TlsOpts], client: Client, *,
               until_message: bool = True, **kwargs: Any) -> Client:
    """Connect with ``tls``; poll until a message came back (or the connection closed)."""
    with Manager() as mgr:
        conn = mgr.mqtt_connect(url, client, client_id="tls-test", tls=tls, **kwargs)
        poll_until(mgr, lambda: client.closed or (until_message and bool(client.messages)),
                   what="the message back or a close")
        if not client.closed:
            conn.close()
            poll_until(mgr, lambda: client.closed, what="the close")
    return client


# -- our client against mosquitto ------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5])
def test_publish_subscribe_through_mosquitto_over_tls(tls_broker: Mosquitto, certs: Certs,
                                                      version: int) -> None:
    client = run_client(tls_broker.tls_url, certs.client_opts(),
                        Client("tls/echo", b"over TLS"), version=version)
    assert client.errors == []
    assert client.opened == [0] and client.was_tls == [True]
    assert client.messages == [("tls/echo", b"over TLS", 1)]


def test_server_name_defaults_to_the_url_host(tmp_path: Path, certs: Certs) -> None:
    # A certificate for other.test only (an IP address entry would match any name).
    config = tls_config(certs.ca, certs.other_host_crt, certs.server_key)
    with mosquitto(tmp_path, config) as other_host:
        refused = run_client(other_host.tls_url, certs.client_opts(), Client("n/x", b"x"))
        named = run_client(other_host.tls_url, certs.client_opts(name="other.test"),
                           Client("tls/name", b"by name"))
    assert refused.opened == []
    assert refused.errors == ["TLS handshake failed: failed to verify hostname"]
    assert named.errors == [] and named.messages == [("tls/name", b"by name", 1)]


def test_wrong_ca_is_a_clear_error(tls_broker: Mosquitto, certs: Certs) -> None:
    client = run_client(tls_broker.tls_url, TlsOpts(ca=certs.other_ca.read_bytes()),
                        Client("tls/never", b"x"))
    assert client.opened == [] and client.messages == []
    assert len(client.errors) == 1, client.errors
    assert client.errors[0].startswith("TLS handshake failed: "), client.errors


def test_mqtts_without_tls_options(our_broker: BrokerServer) -> None:
    url = f"mqtts://127.0.0.1:{our_broker.port}"
    with Manager() as mgr, pytest.raises(ValueError, match="needs the CA"):
        mgr.mqtt_connect(url, Client(), tls=TlsOpts())
    client = run_client(url, None, Client("tls/never", b"x"))
    assert client.opened == []
    assert len(client.errors) == 1 and "no TLS options" in client.errors[0]
    assert "mqtt_connect()" in client.errors[0]


def test_other_schemes_are_refused() -> None:
    with Manager() as mgr, pytest.raises(ValueError, match="mqtts://"):
        mgr.mqtt_connect("https://127.0.0.1:1", Client())
    with Manager() as mgr, pytest.raises(ValueError, match="mqtts://"):
        mgr.mqtt_listen("wss://127.0.0.1:0", Client())


class Recorder:
    """A plain TCP server that records all one client sends.

    Once a full first TLS record is in, it half-closes: the client gives up its handshake
    and closes, and everything it ever sent is then recorded.
    """

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = int(self.listener.getsockname()[1])
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        sock, _ = self.listener.accept()
        with sock:
            sock.settimeout(TIMEOUT)
            data = b""
            while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            sock.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    data += chunk
            self.received = data

    def wait(self) -> bytes:
        """Everything the client sent, once it closed."""
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the client never closed"
        self.listener.close()
        return self.received


def test_connect_is_not_sent_before_the_handshake() -> None:
    recorder = Recorder()
    client = run_client(f"mqtts://127.0.0.1:{recorder.port}", TlsOpts(skip_verification=True),
                        Client("tls/never", b"x"), until_message=False)
    assert client.opened == [] and client.errors[0].startswith("TLS handshake failed: ")
    data = recorder.wait()
    assert data[:1] == b"\x16", data[:16]  # a TLS handshake record: the ClientHello
    assert b"MQTT" not in data and b"tls-test" not in data  # no plain-text CONNECT


# -- our broker on mqtts -------------------------------------------------------------


def test_paho_through_our_broker_over_tls(our_broker: BrokerServer, certs: Certs) -> None:
    assert our_broker.listener.is_tls
    roundtrip(our_broker.port, "tls", tls_ca=certs.ca)
    assert our_broker.errors == []


def test_our_client_through_our_broker_over_tls(our_broker: BrokerServer,
                                                certs: Certs) -> None:
    client = run_client(f"mqtts://127.0.0.1:{our_broker.port}", certs.client_opts(),
                        Client("ours/echo", b"both ends"))
    assert client.errors == [] and client.was_tls == [True]
    assert client.messages == [("ours/echo", b"both ends", 1)]
    assert our_broker.errors == []


def test_plain_client_to_the_mqtts_listener_is_refused(our_broker: BrokerServer,
                                                      certs: Certs) -> None:
    client = run_client(f"mqtt://127.0.0.1:{our_broker.port}", None, Client("p/x", b"x"),
                        until_message=False)
    assert client.opened == [] and client.messages == [] and client.closed
    roundtrip(our_broker.port, "after-plain", tls_ca=certs.ca)


@pytest.mark.parametrize("garbage", [
    b"\x00" * 64,
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd",  # a plain-text CONNECT
    b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",  # a ClientHello that is not one
    b"\x17\x03\x03\x00\x10" + b"\xaa" * 16,  # application data before any handshake
], ids=["zeros", "http", "plain-connect", "bad-hello", "early-data"])
def test_garbage_to_the_mqtts_listener(our_broker: BrokerServer, certs: Certs,
                                       garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", our_broker.port), timeout=TIMEOUT) as sock:
        sock.sendall(garbage)
        reply = read_until_closed(sock, reset_is_close=True)
    assert b"\x20\x02" not in reply  # never a CONNACK
    roundtrip(our_broker.port, "after-garbage", tls_ca=certs.ca)
    assert our_broker.errors == []


@pytest.mark.parametrize("garbage", [
    b"\x00\x00",  # packet type 0
    b"\x30\x04\x00\x01ab",  # PUBLISH before CONNECT
    b"\x10\xff\xff\xff\xff\x01",  # a five-byte remaining length
])
def test_garbage_inside_tls_is_closed(our_broker: BrokerServer, certs: Certs,
                                      garbage: bytes) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    with socket.create_connection(("127.0.0.1", our_broker.port), timeout=TIMEOUT) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(garbage)
        with contextlib.suppress(ssl.SSLError, ConnectionResetError):
            assert read_until_closed(sock, reset_is_close=True) == b""
    roundtrip(our_broker.port, "after-inner-garbage", tls_ca=certs.ca)
    assert our_broker.errors == []


# -- asyncio -------------------------------------------------------------------------


def test_async_manager_mqtts(certs: Certs) -> None:
    import asyncio

    from pymongoose import MqttBroker

    async def main() -> Client:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client = Client("aio/echo", b"async")

        def handler(conn: Connection, ev: int, data: Any) -> None:
            client(conn, ev, data)
            if (client.messages or client.closed) and not done.done():
                done.set_result(None)

        async with AsyncManager() as amgr:
            listener = amgr.mqtt_listen("mqtts://127.0.0.1:0", MqttBroker(),
                                        tls=certs.server_opts())
            addr = listener.local_addr
            assert addr is not None
            amgr.mqtt_connect(f"mqtts://127.0.0.1:{addr[1]}", handler,
                              tls=certs.client_opts())
            await asyncio.wait_for(done, TIMEOUT)
        return client

    client = asyncio.run(main())
    assert client.errors == [] and client.messages == [("aio/echo", b"async", 1)]
