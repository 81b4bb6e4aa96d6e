"""MqttBroker's limits (sessions, queues, messages in flight), with mosquitto as the
reference where it has the same setting, and persistence across a kill -9."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from mqtt_helpers import PUBACK, RawMqtt, Target, broker_thread, publishes
from subprocess_helpers import Child, running
from test_mqtt_differential import both, persistent, sent

from pymongoose import MqttBroker

pytestmark = pytest.mark.timeout(120)


def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for the broker thread to get to ``condition`` (state seen from outside)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("version", [4, 5])
def test_queue_limit_drops_what_does_not_fit(tmp_path: Path, version: int) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "offline", **persistent(version))
        sub.subscribe(("ql/#", 1))
        sub.disconnect()
        pub = RawMqtt(t.port, "pub", version=version)
        for n in range(6):
            sent(pub, f"ql/{n}", b"x", 1)
        back = RawMqtt(t.port, "offline", **persistent(version))
        got = [p.topic for p in back.sync()]
        back.disconnect()
        pub.disconnect()
        return got

    assert both(tmp_path, script, "max_queued_messages 3\n",
                max_queued_messages=3) == ["ql/0", "ql/1", "ql/2"]


def test_inflight_limit_holds_the_rest_back(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "busy", auto_ack=False)
        sub.subscribe(("il/#", 1))
        pub = RawMqtt(t.port, "pub")
        for n in range(4):
            sent(pub, f"il/{n}", b"x", 1)
        window = sub.sync()
        for p in window:
            sub.ack(PUBACK, p.packet_id)
        rest = sub.sync()
        for p in rest:
            sub.ack(PUBACK, p.packet_id)
        sub.sync()
        sub.disconnect()
        pub.disconnect()
        return [p.topic for p in window], [p.topic for p in rest]

    assert both(tmp_path, script, "max_inflight_messages 2\n", max_inflight=2) == (
        ["il/0", "il/1"], ["il/2", "il/3"])


def test_queue_byte_limit_and_dropped_count() -> None:
    broker = MqttBroker(max_queued_bytes=100)
    with broker_thread(broker=broker) as server:
        sub = RawMqtt(server.port, "bytes", clean=False)
        sub.subscribe(("qb/#", 1))
        sub.disconnect()
        pub = RawMqtt(server.port, "pub")
        for n in range(5):
            sent(pub, f"qb/{n}", b"y" * 36, 1)  # 40 bytes a message with its topic
        assert len(broker._sessions["bytes"].queue) == 2  # the session itself
        assert broker.dropped == 3
        back = RawMqtt(server.port, "bytes", clean=False)
        assert [p.topic for p in back.sync()] == ["qb/0", "qb/1"]
        back.disconnect()
        pub.disconnect()


@pytest.mark.parametrize("version", [4, 5])
def test_session_limit_refuses_new_client_ids(version: int) -> None:
    with broker_thread(broker=MqttBroker(max_sessions=2)) as server:
        a = RawMqtt(server.port, "a", **persistent(version))
        b = RawMqtt(server.port, "b", version=version)
        refused = RawMqtt(server.port, "c", version=version, expect_refusal=True)
        assert refused.connack.reason == (0x97 if version == 5 else 3)
        assert refused.closed_by_broker() == []
        a.drop()  # a's session stays: still two sessions
        again = RawMqtt(server.port, "c", version=version, expect_refusal=True)
        assert again.connack.reason != 0
        again.drop()
        a = RawMqtt(server.port, "a", **persistent(version))  # its own session: fine
        assert a.connack.session_present
        b.disconnect()  # a clean session ends with its connection: room again
        a.sync()
        c = RawMqtt(server.port, "c", version=version)
        c.disconnect()
        a.disconnect()
        eventually(lambda: list(server.broker._sessions) == ["a"], "only a's session left")


def _publish_until_killed(port: int, child: Child, acked: list[bytes],
                          kill_after: int) -> None:
    """Publish QoS 1 messages back to back; kill -9 the broker once ``kill_after`` are
    acknowledged; ``acked`` gets the payloads acknowledged before the connection died."""
    pub = RawMqtt(port, "publisher", auto_ack=False)
    payloads: dict[int, bytes] = {}
    stop = threading.Event()

    def reader() -> None:
        try:
            while True:
                packet = pub.read()
                if packet.kind == "PUBACK":
                    acked.append(payloads[packet.packet_id])
                    if len(acked) == kill_after:
                        child.proc.send_signal(signal.SIGKILL)
        except (AssertionError, OSError):
            stop.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    n = 0
    try:
        while not stop.is_set() and n < 5000:
            n += 1
            payloads[n] = f"message {n}".encode()
            pub.publish("persist/data", payloads[n], 1, packet_id=n)
    except OSError:
        pass
    thread.join(timeout=30)
    pub.drop()


def test_persistent_broker_killed_mid_traffic_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    db = str(tmp_path / "broker.db")
    with running("tests/mqtt_broker_child.py", db) as child:  # closes its pipes at the end
        port = int(child.wait_for(r"port (\d+)").group(1))
        offline = RawMqtt(port, "offline-sub", clean=False)
        offline.subscribe(("persist/#", 1))
        offline.disconnect()
        online = RawMqtt(port, "online-sub", version=5, clean=False, auto_ack=False,
                         props=[(0x11, 3600)])
        online.subscribe(("persist/#", 1))
        keeper = RawMqtt(port, "retainer")
        sent(keeper, "persist/retained", b"kept across restarts", 1, retain=True)
        keeper.disconnect()
        acked: list[bytes] = []
        _publish_until_killed(port, child, acked, kill_after=300)
        assert child.proc.wait(timeout=30) == -signal.SIGKILL
        online.drop()
    assert len(acked) >= 300
    with running("tests/mqtt_broker_child.py", db) as child:
        port = int(child.wait_for(r"port (\d+)").group(1))
        for client_id, version in (("offline-sub", 4), ("online-sub", 5)):
            kwargs: dict[str, Any] = {"props": [(0x11, 3600)]} if version == 5 else {}
            sub = RawMqtt(port, client_id, version=version, clean=False, **kwargs)
            assert sub.connack.session_present
            got: list[bytes] = []
            while True:  # until everything acknowledged arrived (or the deadline)
                batch = publishes(sub.sync())
                got.extend(payload for _t, payload, _q, _r in batch)
                if not batch:
                    break
            missing = set(acked) - set(got)
            assert not missing, f"{client_id}: {len(missing)} acknowledged messages lost"
            sub.disconnect()
        fresh = RawMqtt(port, "fresh")
        fresh.subscribe(("persist/retained", 1))
        assert publishes(fresh.sync()) == [
            ("persist/retained", b"kept across restarts", 1, True)]
        fresh.disconnect()
