"""MQTT client (Manager.mqtt_connect and the Connection.mqtt_* methods) against a real
mosquitto broker started by each test."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from _tools import require
from mqtt_helpers import Mosquitto, mosquitto, poll_until

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_MQTT_CMD,
    MG_EV_MQTT_MSG,
    MG_EV_MQTT_OPEN,
    MQTT_CMD_PINGRESP,
    MQTT_CMD_PUBACK,
    MQTT_CMD_PUBCOMP,
    MQTT_CMD_SUBACK,
    MQTT_CMD_UNSUBACK,
    MQTT_PROP_CONTENT_TYPE,
    MQTT_PROP_CORRELATION_DATA,
    MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
    MQTT_PROP_USER_PROPERTY,
    Connection,
    Manager,
    MessageExpiredError,
    MqttMessage,
    connack_reason,
)


class Client:
    """Records what one MQTT client connection receives."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.messages: list[dict[str, Any]] = []
        self.cmds: list[tuple[int, int]] = []  # (cmd, packet id)
        self.errors: list[str] = []
        self.closed = False
        self.kept: Optional[MqttMessage] = None

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_MQTT_OPEN:
            self.opened.append(data)
        elif ev == MG_EV_MQTT_MSG:
            self.kept = data
            self.messages.append({"topic": data.topic, "data": data.data, "qos": data.qos,
                                  "retain": data.retain, "props": data.properties()})
        elif ev == MG_EV_MQTT_CMD:
            self.cmds.append((data.cmd, data.id))
        elif ev == MG_EV_ERROR:
            self.errors.append(data)
        elif ev == MG_EV_CLOSE:
            self.closed = True

    def got(self, cmd: int) -> bool:
        return any(c == cmd for c, _ in self.cmds)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path) as running:
        yield running


@pytest.fixture
def mgr() -> Iterator[Manager]:
    with Manager() as manager:
        yield manager


def connected(mgr: Manager, url: str, **kwargs: Any) -> tuple[Connection, Client]:
    client = Client()
    conn = mgr.mqtt_connect(url, client, **kwargs)
    poll_until(mgr, lambda: client.opened or client.closed, what="CONNACK")
    assert client.opened == [0], client.errors
    return conn, client


def subscribed(mgr: Manager, conn: Connection, client: Client, topic: str,
               qos: int = 0) -> None:
    before = sum(1 for c, _ in client.cmds if c == MQTT_CMD_SUBACK)
    conn.mqtt_sub(topic, qos)
    poll_until(mgr, lambda: sum(1 for c, _ in client.cmds if c == MQTT_CMD_SUBACK) > before,
               what="SUBACK")


def test_publish_qos_0_1_2_and_receive_own_messages(broker: Mosquitto, mgr: Manager) -> None:
    conn, client = connected(mgr, broker.url, client_id="pymongoose-qos")
    assert conn.mqtt_version == 4
    subscribed(mgr, conn, client, "qos/#", 2)
    ids = [conn.mqtt_pub(f"qos/{q}", f"payload {q}", qos=q) for q in (0, 1, 2)]
    assert ids[0] == 0 and ids[1] > 0 and ids[2] > 0 and ids[1] != ids[2]
    poll_until(mgr, lambda: len(client.messages) == 3 and client.got(MQTT_CMD_PUBCOMP))
    received = sorted((m["topic"], m["data"], m["qos"]) for m in client.messages)
    assert received == [("qos/0", b"payload 0", 0), ("qos/1", b"payload 1", 1),
                        ("qos/2", b"payload 2", 2)]
    assert (MQTT_CMD_PUBACK, ids[1]) in client.cmds
    assert (MQTT_CMD_PUBCOMP, ids[2]) in client.cmds


def test_message_view_expires_after_its_handler(broker: Mosquitto, mgr: Manager) -> None:
    conn, client = connected(mgr, broker.url)
    subscribed(mgr, conn, client, "view")
    conn.mqtt_pub("view", b"\x00\xffbinary")
    poll_until(mgr, lambda: client.messages)
    assert client.messages[0]["data"] == b"\x00\xffbinary"
    assert client.kept is not None and not client.kept.is_valid
    with pytest.raises(MessageExpiredError):
        _ = client.kept.topic


def test_retained_message_reaches_a_later_subscriber(broker: Mosquitto, mgr: Manager) -> None:
    publisher, pub_client = connected(mgr, broker.url)
    packet_id = publisher.mqtt_pub("retained/x", "kept for later", qos=1, retain=True)
    poll_until(mgr, lambda: (MQTT_CMD_PUBACK, packet_id) in pub_client.cmds, what="PUBACK")
    conn, client = connected(mgr, broker.url)
    subscribed(mgr, conn, client, "retained/+", 1)
    poll_until(mgr, lambda: client.messages)
    assert client.messages[0]["topic"] == "retained/x"
    assert client.messages[0]["data"] == b"kept for later"
    assert client.messages[0]["retain"] is True


def test_unsubscribe_stops_delivery(broker: Mosquitto, mgr: Manager) -> None:
    conn, client = connected(mgr, broker.url)
    subscribed(mgr, conn, client, "un/a")
    subscribed(mgr, conn, client, "un/marker")
    conn.mqtt_unsub("un/a")
    poll_until(mgr, lambda: client.got(MQTT_CMD_UNSUBACK), what="UNSUBACK")
    conn.mqtt_pub("un/a", "not for us", qos=1)
    conn.mqtt_pub("un/marker", "after", qos=1)  # the broker keeps one client's order
    poll_until(mgr, lambda: client.messages)
    assert [m["topic"] for m in client.messages] == ["un/marker"]


def test_ping_gets_pingresp(broker: Mosquitto, mgr: Manager) -> None:
    conn, client = connected(mgr, broker.url)
    conn.mqtt_ping()
    poll_until(mgr, lambda: client.got(MQTT_CMD_PINGRESP), what="PINGRESP")


def test_keepalive_pings_by_itself(broker: Mosquitto, mgr: Manager) -> None:
    _conn, client = connected(mgr, broker.url, keepalive=1)
    poll_until(mgr, lambda: client.got(MQTT_CMD_PINGRESP), what="an automatic PINGRESP")
    assert not client.closed


def test_disconnect_closes(broker: Mosquitto, mgr: Manager) -> None:
    conn, client = connected(mgr, broker.url)
    conn.mqtt_disconnect()
    poll_until(mgr, lambda: client.closed, what="the broker to close the connection")
    assert client.errors == []


def test_mqtt5_properties_round_trip(broker: Mosquitto, mgr: Manager) -> None:
    conn, client = connected(mgr, broker.url, version=5,
                             properties=[(MQTT_PROP_USER_PROPERTY, ("who", "test"))])
    assert conn.mqtt_version == 5
    subscribed(mgr, conn, client, "v5/#", 1)
    props = [(MQTT_PROP_USER_PROPERTY, ("colour", "blue")),
             (MQTT_PROP_CONTENT_TYPE, "text/plain"),
             (MQTT_PROP_CORRELATION_DATA, b"\x01\x02\x03"),
             (MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, 3600)]
    conn.mqtt_pub("v5/props", "with properties", qos=1, properties=props)
    conn.mqtt_pub("v5/tiny", "x")  # Mongoose alone misreads a 1-byte MQTT 5 payload
    conn.mqtt_pub("v5/empty", "")
    poll_until(mgr, lambda: len(client.messages) == 3)
    by_topic = {m["topic"]: m for m in client.messages}
    assert by_topic["v5/tiny"]["data"] == b"x"
    assert by_topic["v5/empty"]["data"] == b""
    got = by_topic["v5/props"]
    assert got["data"] == b"with properties"
    seen = {p["id"]: p for p in got["props"]}
    assert seen[MQTT_PROP_USER_PROPERTY]["key"] == "colour"
    assert seen[MQTT_PROP_USER_PROPERTY]["val"] == "blue"
    assert seen[MQTT_PROP_CONTENT_TYPE]["val"] == "text/plain"
    assert seen[MQTT_PROP_CORRELATION_DATA]["val"] == b"\x01\x02\x03"
    assert 0 < seen[MQTT_PROP_MESSAGE_EXPIRY_INTERVAL]["iv"] <= 3600


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    require("mosquitto", "mosquitto_passwd")
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "alice", "s3cret"],
                   check=True, capture_output=True)
    with mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n") as b:
        yield b


@pytest.mark.parametrize("version", [4, 5])
def test_bad_credentials_are_reported(auth_broker: Mosquitto, mgr: Manager,
                                      version: int) -> None:
    client = Client()
    mgr.mqtt_connect(auth_broker.url, client, username="alice", password="wrong",
                     version=version)
    poll_until(mgr, lambda: client.closed, what="the refused connection to close")
    assert len(client.opened) == 1 and client.opened[0] != 0
    reason = connack_reason(client.opened[0], version)
    assert reason in ("not authorized", "bad user name or password")
    assert len(client.errors) == 1
    assert "refused" in client.errors[0] and reason in client.errors[0]


def test_good_credentials_are_accepted(auth_broker: Mosquitto, mgr: Manager) -> None:
    connected(mgr, auth_broker.url, username="alice", password="s3cret")


def test_will_is_published_when_the_client_vanishes(broker: Mosquitto, mgr: Manager) -> None:
    watcher, watching = connected(mgr, broker.url)
    subscribed(mgr, watcher, watching, "wills/#", 1)
    with Manager() as other:
        connected(other, broker.url, client_id="doomed",
                                  will_topic="wills/doomed", will_message="gone", will_qos=1)
    # Closing the Manager dropped the socket without DISCONNECT.
    poll_until(mgr, lambda: watching.messages, what="the will")
    assert watching.messages[0]["topic"] == "wills/doomed"
    assert watching.messages[0]["data"] == b"gone"


def test_events_filter_applies_to_mqtt(broker: Mosquitto, mgr: Manager) -> None:
    seen: list[int] = []
    conn = mgr.mqtt_connect(broker.url, lambda c, ev, d: seen.append(ev),
                            events=(MG_EV_MQTT_OPEN,))
    poll_until(mgr, lambda: seen)
    assert set(seen) == {MG_EV_MQTT_OPEN}
    conn.mqtt_disconnect()


def test_bad_arguments_raise(broker: Mosquitto, mgr: Manager) -> None:
    conn, _client = connected(mgr, broker.url)
    with pytest.raises(ValueError, match="0, 1 or 2"):
        conn.mqtt_pub("t", "m", qos=3)
    with pytest.raises(TypeError, match="qos"):
        conn.mqtt_pub("t", "m", qos="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="topic"):
        conn.mqtt_pub(b"t", "m")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wildcards"):
        conn.mqtt_pub("a/+", "m")
    with pytest.raises(ValueError, match="empty"):
        conn.mqtt_pub("", "m")
    with pytest.raises(TypeError, match="message"):
        conn.mqtt_pub("t", 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="last"):
        conn.mqtt_sub("a/#/b")
    with pytest.raises(ValueError, match="whole level"):
        conn.mqtt_unsub("a/b+")
    with pytest.raises(ValueError, match="MQTT 5"):
        conn.mqtt_pub("t", "m", properties=[(MQTT_PROP_CONTENT_TYPE, "x")])
    with pytest.raises(ValueError, match="version"):
        mgr.mqtt_connect(broker.url, version=3)
    with pytest.raises(ValueError, match="keepalive"):
        mgr.mqtt_connect(broker.url, keepalive=70000)
    with pytest.raises(ValueError, match="mqtt://"):
        mgr.mqtt_connect("http://127.0.0.1:1883")
    with pytest.raises(ValueError, match="will_topic"):
        mgr.mqtt_connect(broker.url, will_message="orphan")
    with pytest.raises(ValueError, match="property id"):
        mgr.mqtt_connect(broker.url, version=5, properties=[(0x7F, 1)])
    with pytest.raises(ValueError, match="from 0 to 255"):
        mgr.mqtt_connect(broker.url, version=5, properties=[(0x01, 256)])
    plain = mgr.listen("tcp://127.0.0.1:0")
    # As in cymongoose, a helper on a plain connection sends nothing and raises nothing;
    # pymongoose says so with a warning.
    with pytest.warns(RuntimeWarning, match="not an MQTT connection.*nothing was sent"):
        assert plain.mqtt_pub("t", "m") == 0
    with pytest.warns(RuntimeWarning, match="not an MQTT connection"):
        plain.mqtt_disconnect()
    assert plain.send_len == 0
