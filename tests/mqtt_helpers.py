"""MQTT test helpers: a real mosquitto broker on 127.0.0.1, and polling until done.

mosquitto cannot listen on port 0, so a free port is found by binding port 0 and
closing it; when mosquitto still loses the race (it exits), another port is tried.
Readiness is its own log line, then a TCP connect: no sleeps.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from _tools import require

from pymongoose import Manager

TIMEOUT = 10.0


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mosquitto:
    """A running mosquitto: its URL and its log so far."""

    port: int
    proc: subprocess.Popen[str]
    log: list[str]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """The URL when started with ``tls_config``'s lines."""
        return f"mqtts://127.0.0.1:{self.port}"


def tls_config(ca: Path, cert: Path, key: Path) -> str:
    """Configuration lines that make mosquitto's listener TLS 1.3 with these PEM files."""
    return (f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\ntls_version tlsv1.3\n"
            "allow_anonymous true\n")


def _start(config_dir: Path, extra: str) -> Optional[Mosquitto]:
    port = free_port()
    conf = config_dir / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\n"
                    "log_type error\nlog_type warning\nlog_type notice\n"
                    "log_type information\n" + extra)
    if os.geteuid() == 0:  # else mosquitto drops to its own user, who cannot read tmp_path
        with conf.open("a") as f:
            f.write("user root\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    lines: queue.Queue[Optional[str]] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        with proc.stderr:  # closed at EOF: mosquitto has exited
            for line in proc.stderr:
                log.append(line)
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:  # exited: most likely the port was taken meanwhile
            proc.wait(timeout=TIMEOUT)
            if not any("Address already in use" in entry for entry in log):
                raise AssertionError("mosquitto exited: " + "".join(log))
            return None
        if " running" in line:
            break
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass
    return Mosquitto(port, proc, log)


@contextlib.contextmanager
def mosquitto(config_dir: Path, extra: str = "allow_anonymous true\n") -> Iterator[Mosquitto]:
    """Run mosquitto with ``extra`` configuration lines until the block ends."""
    require("mosquitto")
    broker = None
    for _attempt in range(5):
        broker = _start(config_dir, extra)
        if broker is not None:
            break
    assert broker is not None, "mosquitto would not start"
    try:
        yield broker
    finally:
        broker.proc.terminate()
        try:
            broker.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            broker.proc.kill()
            broker.proc.wait(timeout=TIMEOUT)


def poll_until(manager: Manager, done: Callable[[], Any], timeout: float = TIMEOUT,
               what: str = "the expected events") -> None:
    """Poll ``manager`` until ``done()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        manager.poll(20)


class Paho:
    """A paho-mqtt client on its own network thread, with waits instead of callbacks."""

    def __init__(self, port: int, client_id: str, *, version: int = 4,
                 will: Optional[tuple[str, bytes, int]] = None,
                 tls_ca: Optional[Path] = None) -> None:
        import paho.mqtt.client as paho

        protocol = paho.MQTTv5 if version == 5 else paho.MQTTv311
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol)
        self.messages: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()
        self.properties: dict[str, Any] = {}  # MQTT 5: the last properties per topic
        self._connected = threading.Event()
        self._acked: set[int] = set()
        self._acks = threading.Condition()
        self.reason: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_ack
        self.client.on_unsubscribe = self._on_ack
        if will is not None:
            self.client.will_set(will[0], will[1], will[2])
        if tls_ca is not None:  # TLS, the server checked against tls_ca and 127.0.0.1
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(TIMEOUT), "paho: no CONNACK"
        assert not self.reason.is_failure, f"paho: refused ({self.reason})"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        self.reason = reason
        self._connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.properties[msg.topic] = getattr(msg, "properties", None)
        self.messages.put((msg.topic, msg.payload, msg.qos, bool(msg.retain)))

    def _on_ack(self, client: Any, userdata: Any, mid: int, *rest: Any) -> None:
        with self._acks:
            self._acked.add(mid)
            self._acks.notify_all()

    def _wait_ack(self, mid: int) -> None:
        with self._acks:
            assert self._acks.wait_for(lambda: mid in self._acked, TIMEOUT), "paho: no ack"

    def subscribe(self, topic: str, qos: int = 0) -> None:
        """Subscribe and wait for SUBACK."""
        _rc, mid = self.client.subscribe(topic, qos)
        self._wait_ack(mid)

    def unsubscribe(self, topic: str) -> None:
        """Unsubscribe and wait for UNSUBACK."""
        _rc, mid = self.client.unsubscribe(topic)
        self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                properties: Any = None) -> None:
        """Publish and wait until it is sent (QoS 0) or acknowledged (QoS 1, 2)."""
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), "paho: publish not acknowledged"

    def receive_until(self, topic: str) -> list[tuple[str, bytes, int, bool]]:
        """Messages received, up to and including the first one on ``topic``."""
        got = []
        while True:
            try:
                message = self.messages.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"paho: nothing on {topic} within {TIMEOUT} s; "
                                     f"got {got}") from None
            got.append(message)
            if message[0] == topic:
                return got

    def close(self) -> None:
        """DISCONNECT and stop the network thread."""
        self.client.disconnect()
        # paho's race: after DISCONNECT its thread may end, and clear its own handle,
        # between loop_stop()'s check of that handle and its join() (AttributeError).
        # The thread has ended then, which is all loop_stop() was for.
        with contextlib.suppress(AttributeError):
            self.client.loop_stop()

    def vanish(self) -> None:
        """Drop the TCP connection without DISCONNECT (the broker publishes the will)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def roundtrip(port: int, tag: str, tls_ca: Optional[Path] = None) -> None:
    """One subscriber and one publisher through the broker on ``port``: must work."""
    subscriber = Paho(port, f"check-sub-{tag}", tls_ca=tls_ca)
    publisher = Paho(port, f"check-pub-{tag}", tls_ca=tls_ca)
    try:
        subscriber.subscribe(f"check/{tag}/#", 1)
        publisher.publish(f"check/{tag}/x", b"still serving", 1)
        assert subscriber.receive_until(f"check/{tag}/x") == [
            (f"check/{tag}/x", b"still serving", 1, False)]
    finally:
        publisher.close()
        subscriber.close()


@dataclass
class BrokerServer:
    """An in-process MqttBroker polled by a background thread."""

    manager: Manager
    listener: Any
    broker: Any
    errors: list[BaseException]

    @property
    def port(self) -> int:
        addr = self.listener.local_addr
        assert addr is not None
        return int(addr[1])


@contextlib.contextmanager
def broker_thread(url: str = "mqtt://127.0.0.1:0", broker: Any = None,
                  **listen_kwargs: Any) -> Iterator[BrokerServer]:
    """``broker`` (a new ``MqttBroker()`` by default) on ``url``, polled in a thread
    until the block ends."""
    from pymongoose import MqttBroker

    errors: list[BaseException] = []
    manager = Manager(error_handler=errors.append)
    if broker is None:
        broker = MqttBroker()
    listener = manager.mqtt_listen(url, broker, **listen_kwargs)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            manager.poll(20)

    thread = threading.Thread(target=loop, name="mqtt-broker-poll", daemon=True)
    thread.start()
    try:
        yield BrokerServer(manager, listener, broker, errors)
    finally:
        stop.set()
        thread.join(timeout=TIMEOUT)
        manager.close()


# -- a raw MQTT client: every packet visible, nothing done behind the test's back -------

_PROP_KINDS = {  # MQTT 5 property id -> wire type: b byte, h two bytes, i four, v varint,
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "d", 0x0B: "v", 0x11: "i",  # s str,
    0x12: "s", 0x13: "h", 0x15: "s", 0x16: "d", 0x17: "b", 0x18: "i", 0x19: "b",  # d bytes,
    0x1A: "s", 0x1C: "s", 0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b",  # p pair
    0x25: "b", 0x26: "p", 0x27: "i", 0x28: "b", 0x29: "b", 0x2A: "b",
}
PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 3, 4, 5, 6, 7
NAMES = {2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         9: "SUBACK", 11: "UNSUBACK", 13: "PINGRESP", 14: "DISCONNECT"}


def varint(n: int) -> bytes:
    """``n`` as an MQTT Variable Byte Integer."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(raw: bytes) -> bytes:
    return len(raw).to_bytes(2, "big") + raw


def encode_props(props: list[tuple[int, Any]]) -> bytes:
    """An MQTT 5 property block, its length first."""
    out = b""
    for prop_id, value in props:
        kind = _PROP_KINDS[prop_id]
        out += varint(prop_id)
        if kind == "b":
            out += bytes([value])
        elif kind == "h":
            out += value.to_bytes(2, "big")
        elif kind == "i":
            out += value.to_bytes(4, "big")
        elif kind == "v":
            out += varint(value)
        elif kind == "s":
            out += _str(value.encode())
        elif kind == "d":
            out += _str(value)
        else:
            out += _str(value[0].encode()) + _str(value[1].encode())
    return varint(len(out)) + out


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def decode_props(data: bytes, pos: int) -> tuple[list[tuple[int, Any]], int]:
    """The property block at ``data[pos:]`` and the position after it."""
    length, pos = _read_varint(data, pos)
    end, props = pos + length, []
    while pos < end:
        prop_id, pos = _read_varint(data, pos)
        kind = _PROP_KINDS[prop_id]
        value: Any
        if kind in "bhi":
            size = {"b": 1, "h": 2, "i": 4}[kind]
            value, pos = int.from_bytes(data[pos:pos + size], "big"), pos + size
        elif kind == "v":
            value, pos = _read_varint(data, pos)
        else:
            n = int.from_bytes(data[pos:pos + 2], "big")
            value, pos = data[pos + 2:pos + 2 + n], pos + 2 + n
            if kind == "s":
                value = value.decode()
            elif kind == "p":
                m = int.from_bytes(data[pos:pos + 2], "big")
                value, pos = (value.decode(), data[pos + 2:pos + 2 + m].decode()), pos + 2 + m
        props.append((prop_id, value))
    return props, end


@dataclass
class Packet:
    """A packet the broker sent, decoded as far as the tests need."""

    kind: str
    flags: int
    body: bytes
    version: int
    packet_id: int = 0
    topic: str = ""
    payload: bytes = b""
    reason: int = 0
    props: list[tuple[int, Any]] = field(default_factory=list)
    codes: bytes = b""

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 8)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 1)

    @property
    def session_present(self) -> bool:
        return bool(self.body[0] & 1)

    def prop(self, prop_id: int, default: Any = None) -> Any:
        return next((v for k, v in self.props if k == prop_id), default)

    def props_all(self, prop_id: int) -> list[Any]:
        return [v for k, v in self.props if k == prop_id]


def _decode(first: int, body: bytes, version: int) -> Packet:
    cmd = first >> 4
    p = Packet(NAMES.get(cmd, str(cmd)), first & 15, body, version)
    v5 = version == 5
    if cmd == 2:  # CONNACK
        p.reason = body[1]
        if v5 and len(body) > 2:
            p.props = decode_props(body, 2)[0]
    elif cmd == 3:
        n = int.from_bytes(body[:2], "big")
        p.topic = body[2:2 + n].decode()
        pos = 2 + n
        if p.qos:
            p.packet_id, pos = int.from_bytes(body[pos:pos + 2], "big"), pos + 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.payload = body[pos:]
    elif cmd in (4, 5, 6, 7):
        p.packet_id = int.from_bytes(body[:2], "big")
        p.reason = body[2] if len(body) > 2 else 0
    elif cmd in (9, 11):
        p.packet_id = int.from_bytes(body[:2], "big")
        pos = 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.codes = body[pos:]
    elif cmd == 14:
        p.reason = body[0] if body else 0
        if len(body) > 1:
            p.props = decode_props(body, 1)[0]
    return p


class RawMqtt:
    """A socket speaking MQTT by hand: every packet the broker sends is seen, nothing is
    acknowledged unless ``auto_ack`` (PUBACK, PUBREC, PUBCOMP) or the test says so."""

    def __init__(self, port: int, client_id: str, *, version: int = 4, clean: bool = True,
                 props: Optional[list[tuple[int, Any]]] = None, keepalive: int = 60,
                 will: Optional[tuple[str, bytes, int, bool]] = None,
                 will_props: Optional[list[tuple[int, Any]]] = None,
                 auto_ack: bool = True, expect_refusal: bool = False) -> None:
        self.version = version
        self.auto_ack = auto_ack
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.next_id = 1
        self.closed = False
        self.released = 0  # PUBREL sent by auto_ack
        flags = 2 if clean else 0
        payload = _str(client_id.encode())
        if will is not None:
            flags |= 4 | (will[2] << 3) | (0x20 if will[3] else 0)
            if version == 5:
                payload += encode_props(will_props or [])
            payload += _str(will[0].encode()) + _str(will[1])
        body = _str(b"MQTT") + bytes([version, flags]) + keepalive.to_bytes(2, "big")
        if version == 5:
            body += encode_props(props or [])
        self.send_packet(0x10, body + payload)
        self.connack = self.read()
        assert self.connack.kind == "CONNACK", self.connack
        if not expect_refusal:
            assert self.connack.reason == 0, f"CONNECT refused: {self.connack}"

    # sending
    def send_packet(self, first: int, body: bytes) -> None:
        self.sock.sendall(bytes([first]) + varint(len(body)) + body)

    def new_id(self) -> int:
        packet_id = self.next_id
        self.next_id += 1
        return packet_id

    def subscribe(self, *filters: tuple[str, int], props: Optional[list[tuple[int, Any]]] = None,
                  wait: bool = True) -> Optional[Packet]:
        """Subscribe ``(filter, options byte)`` pairs; returns the SUBACK."""
        packet_id = self.new_id()
        body = packet_id.to_bytes(2, "big")
        if self.version == 5:
            body += encode_props(props or [])
        for topic, options in filters:
            body += _str(topic.encode()) + bytes([options])
        self.send_packet(0x82, body)
        return self.expect("SUBACK") if wait else None

    def unsubscribe(self, *filters: str) -> Packet:
        packet_id = self.new_id()
        body = packet_id.to_bytes(2, "big") + (b"\0" if self.version == 5 else b"")
        for topic in filters:
            body += _str(topic.encode())
        self.send_packet(0xA2, body)
        return self.expect("UNSUBACK")

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, *,
                props: Optional[list[tuple[int, Any]]] = None, packet_id: int = 0,
                dup: bool = False) -> int:
        """Send a PUBLISH (no waiting); returns its packet id."""
        if qos and not packet_id:
            packet_id = self.new_id()
        body = _str(topic.encode())
        if qos:
            body += packet_id.to_bytes(2, "big")
        if self.version == 5:
            body += encode_props(props or [])
        self.send_packet(0x30 | qos << 1 | (1 if retain else 0) | (8 if dup else 0),
                         body + payload)
        return packet_id

    def ack(self, kind: int, packet_id: int) -> None:
        self.send_packet(kind << 4 | (2 if kind == PUBREL else 0), packet_id.to_bytes(2, "big"))

    def disconnect(self, reason: int = 0, props: Optional[list[tuple[int, Any]]] = None
                   ) -> None:
        body = b""
        if self.version == 5 and (reason or props):
            body = bytes([reason]) + encode_props(props or [])
        self.send_packet(0xE0, body)
        self.drop()

    def drop(self) -> None:
        """Close the socket without DISCONNECT."""
        if not self.closed:
            self.closed = True
            self.sock.close()

    # receiving
    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read(self) -> Packet:
        """The next packet; AssertionError when the broker closes first."""
        while True:
            if len(self.buf) >= 2:
                length, pos, shift = 0, 1, 0
                complete = False
                while pos < len(self.buf):
                    byte = self.buf[pos]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    pos += 1
                    if not byte & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= pos + length:
                    first, body = self.buf[0], self.buf[pos:pos + length]
                    self.buf = self.buf[pos + length:]
                    packet = _decode(first, body, self.version)
                    self._auto(packet)
                    return packet
            if not self._fill():
                raise AssertionError("the broker closed the connection")

    def _auto(self, packet: Packet) -> None:
        if not self.auto_ack:
            return
        if packet.kind == "PUBLISH" and packet.qos == 1:
            self.ack(PUBACK, packet.packet_id)
        elif packet.kind == "PUBLISH" and packet.qos == 2:
            self.ack(PUBREC, packet.packet_id)
        elif packet.kind == "PUBREL":
            self.ack(PUBCOMP, packet.packet_id)
        elif packet.kind == "PUBREC":
            self.ack(PUBREL, packet.packet_id)
            self.released += 1

    def expect(self, kind: str) -> Packet:
        """Read until a packet of ``kind``; fail on a PUBLISH or DISCONNECT meanwhile."""
        packet = self.read()
        assert packet.kind == kind, f"expected {kind}, got {packet}"
        return packet

    def sync(self) -> list[Packet]:
        """PINGREQ, then everything the broker sent before its PINGRESP: what it had
        to say about all it handled before the ping. A PUBREL sent meanwhile
        (auto_ack) takes another round, so QoS 2 publications are complete too."""
        got = []
        while True:
            released = self.released
            self.send_packet(0xC0, b"")
            while True:
                packet = self.read()
                if packet.kind == "PINGRESP":
                    break
                got.append(packet)
            if self.released == released:
                return got

    def closed_by_broker(self) -> list[Packet]:
        """Everything until the broker closes the connection (DISCONNECT included)."""
        got = []
        while True:
            try:
                got.append(self.read())
            except AssertionError:
                self.drop()
                return got
            except OSError:
                self.drop()
                return got


def publishes(packets: list[Packet]) -> list[tuple[str, bytes, int, bool]]:
    """``(topic, payload, qos, retain)`` of the PUBLISH packets among ``packets``."""
    return [(p.topic, p.payload, p.qos, p.retain) for p in packets if p.kind == "PUBLISH"]


@dataclass
class Target:
    """A broker for a differential test: its name and port."""

    name: str
    port: int
    server: Any = None  # the BrokerServer for MqttBroker


@contextlib.contextmanager
def target(name: str, config_dir: Path, mosquitto_conf: str = "",
           **broker_kwargs: Any) -> Iterator[Target]:
    """A fresh "mosquitto" or "pymongoose" (MqttBroker in a thread) broker."""
    if name == "mosquitto":
        with mosquitto(config_dir, "allow_anonymous true\n" + mosquitto_conf) as m:
            yield Target(name, m.port)
    else:
        from pymongoose import MqttBroker

        with broker_thread(broker=MqttBroker(**broker_kwargs)) as server:
            yield Target(name, server.port, server)
            assert server.errors == []
