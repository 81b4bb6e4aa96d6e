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
from dataclasses import dataclass
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
def broker_thread(url: str = "mqtt://127.0.0.1:0",
                  **listen_kwargs: Any) -> Iterator[BrokerServer]:
    """``MqttBroker`` on ``url``, polled in a thread until the block ends."""
    from pymongoose import MqttBroker

    errors: list[BaseException] = []
    manager = Manager(error_handler=errors.append)
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
