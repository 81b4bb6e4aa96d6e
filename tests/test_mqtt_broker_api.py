"""Writing a broker by hand with mqtt_listen and the broker-side Connection methods
(mqtt_connack, mqtt_suback, mqtt_unsuback, mqtt_pong, mqtt_send_header + send), checked
with paho-mqtt clients; plus MqttMessage's documentation and AsyncManager's MQTT."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mqtt_helpers import TIMEOUT, Paho, mosquitto
from test_docs import DOCUMENTED, public_members

from pymongoose import (
    MG_EV_MQTT_CMD,
    MG_EV_MQTT_MSG,
    MG_EV_MQTT_OPEN,
    MQTT_CMD_CONNECT,
    MQTT_CMD_PINGREQ,
    MQTT_CMD_PUBLISH,
    MQTT_CMD_SUBACK,
    MQTT_CMD_SUBSCRIBE,
    MQTT_CMD_UNSUBSCRIBE,
    MQTT_PROP_USER_PROPERTY,
    Connection,
    Manager,
    MqttMessage,
    parse_connect,
    parse_subscribe,
    parse_unsubscribe,
)
from pymongoose.aio import AsyncManager


class HandBroker:
    """Accepts everyone but user "deny"; answers each SUBSCRIBE with a hand-made PUBLISH."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, list[dict[str, Any]], int]] = []
        self.pings = 0

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_MQTT_MSG:
            self.published.append((data.topic, data.data, data.properties(),
                                   conn.mqtt_version))
        if ev != MG_EV_MQTT_CMD:
            return
        if data.cmd == MQTT_CMD_CONNECT:
            info = parse_connect(data.dgram)
            conn.mqtt_connack(5 if info.username == "deny" else 0)
        elif data.cmd == MQTT_CMD_SUBSCRIBE:
            packet_id, filters = parse_subscribe(data.dgram, conn.mqtt_version)
            conn.mqtt_suback(packet_id, [qos for _topic, qos in filters])
            topic = b"welcome/" + filters[0][0].encode()
            body = struct.pack("!H", len(topic)) + topic
            if conn.mqtt_version == 5:
                body += b"\x00"  # no properties
            body += b"hand-made"
            conn.mqtt_send_header(MQTT_CMD_PUBLISH, 0, len(body))
            conn.send(body)
        elif data.cmd == MQTT_CMD_UNSUBSCRIBE:
            packet_id, topics = parse_unsubscribe(data.dgram, conn.mqtt_version)
            conn.mqtt_unsuback(packet_id, len(topics))
        elif data.cmd == MQTT_CMD_PINGREQ:
            self.pings += 1
            conn.mqtt_pong()


@pytest.fixture
def hand_broker() -> Iterator[tuple[int, HandBroker]]:
    broker = HandBroker()
    manager = Manager()
    listener = manager.mqtt_listen("mqtt://127.0.0.1:0", broker)
    addr = listener.local_addr
    assert addr is not None
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            manager.poll(20)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield addr[1], broker
    finally:
        stop.set()
        thread.join(timeout=TIMEOUT)
        manager.close()


@pytest.mark.parametrize("version", [4, 5])
def test_hand_written_broker_answers_paho(hand_broker: tuple[int, HandBroker],
                                          version: int) -> None:
    port, broker = hand_broker
    client = Paho(port, f"hand-{version}", version=version)
    try:
        client.subscribe("news", 1)
        assert client.receive_until("welcome/news") == [("welcome/news", b"hand-made", 0,
                                                         False)]
        client.unsubscribe("news")
        props = None
        if version == 5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("origin", "paho")
        info = client.client.publish("up/x", b"y", 1, properties=props)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
    finally:
        client.close()
    topic, payload, properties, seen_version = broker.published[0]
    assert (topic, payload, seen_version) == ("up/x", b"y", version)
    if version == 5:
        assert {"id": MQTT_PROP_USER_PROPERTY, "iv": 0, "key": "origin",
                "val": "paho"} in properties
    else:
        assert properties == []


def test_hand_written_broker_refusal_reaches_paho(hand_broker: tuple[int, HandBroker]) -> None:
    port, _broker = hand_broker
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="denied")
    client.username_pw_set("deny", "x")
    refused = threading.Event()
    codes: list[Any] = []

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        codes.append(reason)
        refused.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert refused.wait(TIMEOUT)
        assert codes[0].is_failure and "authori" in str(codes[0]).lower()
    finally:
        client.loop_stop()


def test_mqtt_message_members_are_documented() -> None:
    missing = [name for name in public_members(MqttMessage) if name not in DOCUMENTED]
    assert not missing, f"MqttMessage members missing from the docs pages: {missing}"
    for name in public_members(MqttMessage):
        member = getattr(MqttMessage, name)
        doc = (member.fget if isinstance(member, property) else member).__doc__
        assert doc and doc.strip(), f"MqttMessage.{name} has no docstring"


def test_async_manager_mqtt(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        async def main() -> list[bytes]:
            got: list[bytes] = []
            done = asyncio.Event()

            def handler(conn: Connection, ev: int, data: Any) -> None:
                if ev == MG_EV_MQTT_OPEN and data == 0:
                    conn.mqtt_sub("aio/#", 1)
                elif ev == MG_EV_MQTT_CMD and data.cmd == MQTT_CMD_SUBACK:
                    conn.mqtt_pub("aio/x", "from asyncio", qos=1)
                elif ev == MG_EV_MQTT_MSG:
                    got.append(data.data)
                    done.set()

            async with AsyncManager() as amgr:
                amgr.mqtt_connect(broker.url, handler, client_id="aio")
                await asyncio.wait_for(done.wait(), TIMEOUT)
            return got

        assert asyncio.run(main()) == [b"from asyncio"]


def test_listen_errors_and_connack_reasons() -> None:
    from pymongoose import ListenError, connack_reason

    with Manager() as mgr:
        first = mgr.mqtt_listen("mqtt://127.0.0.1:0")
        addr = first.local_addr
        assert addr is not None
        with pytest.raises(ListenError, match="cannot listen"):
            mgr.mqtt_listen(f"mqtt://127.0.0.1:{addr[1]}")
        with pytest.raises(ValueError, match="mqtt://"):
            mgr.mqtt_listen("http://127.0.0.1:0")
        with pytest.raises(ValueError, match="timeout_ms"):
            mgr.mqtt_listen("mqtt://127.0.0.1:0", timeout_ms=-1)
        with pytest.raises(ValueError, match="max_packet_size"):
            mgr.mqtt_listen("mqtt://127.0.0.1:0", max_packet_size=1)
        with pytest.raises(ValueError, match="cmd"):
            first.mqtt_send_header(0, 0, 0)
        with pytest.raises(ValueError, match="length"):
            first.mqtt_send_header(3, 0, 268_435_456)
        with pytest.raises(ValueError, match="packet_id"):
            first.mqtt_suback(0, [0])
        with pytest.raises(ValueError, match="codes"):
            first.mqtt_suback(1, [])
    assert connack_reason(0) == "accepted"
    assert connack_reason(4) == "bad user name or password"
    assert connack_reason(0x87, 5) == "not authorized"
    assert connack_reason(0x87) == "unknown return code"
    with pytest.raises(ValueError):
        connack_reason(256)


@pytest.mark.parametrize("version", [4, 5])
def test_subscribe_parsers_read_their_own_packets_only(version: int) -> None:
    props = b"\x00" if version == 5 else b""  # v5: an empty property block
    topic = b"\x00\x03a/b"
    sub_body = b"\x00\x07" + props + topic + b"\x01"  # packet id 7, filter a/b at QoS 1
    unsub_body = b"\x00\x08" + props + topic  # packet id 8, filter a/b
    subscribe = bytes([0x82, len(sub_body)]) + sub_body
    unsubscribe = bytes([0xA2, len(unsub_body)]) + unsub_body
    assert parse_subscribe(subscribe, version) == (7, [("a/b", 1)])
    assert parse_unsubscribe(unsubscribe, version) == (8, ["a/b"])
    with pytest.raises(ValueError, match="not a SUBSCRIBE packet"):
        parse_subscribe(unsubscribe, version)
    with pytest.raises(ValueError, match="not an UNSUBSCRIBE packet"):
        parse_unsubscribe(subscribe, version)
