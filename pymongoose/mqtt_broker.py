"""An MQTT broker's side: parsing what clients send, matching topics, routing PUBLISH.

:class:`MqttBroker` is a complete small broker to pass to ``Manager.mqtt_listen``; the
parsers and :func:`topic_matches` are there for writing your own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from .constants import MG_EV_CLOSE, MG_EV_MQTT_CMD, MG_EV_MQTT_MSG
from .mqtt import (
    _PROP_TYPES,
    MQTT_CMD_CONNECT,
    MQTT_CMD_DISCONNECT,
    MQTT_CMD_PINGREQ,
    MQTT_CMD_SUBSCRIBE,
    MQTT_CMD_UNSUBSCRIBE,
    MQTT_PROP_SUBSCRIPTION_IDENTIFIER,
    MQTT_PROP_TOPIC_ALIAS,
    MQTT_PROP_TYPE_BINARY_DATA,
    MQTT_PROP_TYPE_STRING,
    MQTT_PROP_TYPE_STRING_PAIR,
    MqttMessage,
    MqttProperties,
    _check_qos,
    check_topic_filter,
    check_topic_name,
)

if TYPE_CHECKING:
    from .connection import Connection

__all__ = [
    "MqttBroker",
    "MqttConnect",
    "parse_connect",
    "parse_subscribe",
    "parse_unsubscribe",
    "topic_matches",
]


# -- parsing what clients send a broker -----------------------------------------------


class _Reader:
    """Reads the fields of one packet; ValueError when it runs out or finds garbage."""

    def __init__(self, packet: bytes) -> None:
        if len(packet) < 2:
            raise ValueError("truncated MQTT packet")
        self.data = packet
        pos, length, shift = 1, 0, 0
        while True:
            if pos >= len(packet) or pos > 4:
                raise ValueError("malformed MQTT remaining length")
            byte = packet[pos]
            length |= (byte & 0x7F) << shift
            shift += 7
            pos += 1
            if not byte & 0x80:
                break
        if pos + length != len(packet):
            raise ValueError("MQTT packet length does not match its header")
        self.pos = pos
        self.flags = packet[0] & 0x0F

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated MQTT packet")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self.take(2))[0])

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
        raise ValueError("malformed MQTT variable byte integer")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("MQTT string is not valid UTF-8") from None
        if "\0" in value:
            raise ValueError("MQTT string contains NUL")
        return value

    def skip_properties(self) -> None:
        self.take(self.varint())

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)


@dataclass
class MqttConnect:
    """A parsed CONNECT packet (see :func:`parse_connect`)."""

    version: int
    client_id: str
    clean_session: bool
    keepalive: int
    username: Optional[str] = None
    password: Optional[bytes] = None
    will_topic: Optional[str] = None
    will_message: bytes = b""
    will_qos: int = 0
    will_retain: bool = False


def parse_connect(packet: bytes) -> MqttConnect:
    """Parse a CONNECT packet (``MqttMessage.dgram``); ValueError if it is malformed."""
    r = _Reader(packet)
    if packet[0] >> 4 != MQTT_CMD_CONNECT:
        raise ValueError("not a CONNECT packet")
    if r.binary() != b"MQTT":
        raise ValueError("CONNECT: protocol name is not MQTT")
    level = r.u8()
    if level not in (4, 5):
        raise ValueError(f"CONNECT: unsupported protocol level {level}")
    flags = r.u8()
    if flags & 0x01:
        raise ValueError("CONNECT: reserved flag set")
    keepalive = r.u16()
    if level == 5:
        r.skip_properties()
    info = MqttConnect(level, r.text(), bool(flags & 0x02), keepalive)
    if flags & 0x04:
        if level == 5:
            r.skip_properties()
        info.will_topic = r.text()
        check_topic_name(info.will_topic, "CONNECT: will topic")
        info.will_message = r.binary()
        info.will_qos = _check_qos((flags >> 3) & 3, "CONNECT: will QoS")
        info.will_retain = bool(flags & 0x20)
    elif flags & 0x38:
        raise ValueError("CONNECT: will QoS or retain without a will")
    if flags & 0x80:
        info.username = r.text()
    if flags & 0x40:
        info.password = r.binary()
    if not r.done:
        raise ValueError("CONNECT: bytes after the payload")
    return info


def _read_filter_prelude(packet: bytes, cmd: int, what: str,
                         version: int) -> tuple[_Reader, int]:
    """Check a (UN)SUBSCRIBE's type, read its packet id and skip its v5 properties:
    ``(reader at the first filter, packet_id)``. ``what``: "a SUBSCRIBE", for errors."""
    r = _Reader(packet)
    if packet[0] >> 4 != cmd:
        raise ValueError(f"not {what} packet")
    packet_id = r.u16()
    if version == 5:
        r.skip_properties()
    return r, packet_id


def parse_subscribe(packet: bytes, version: int = 4) -> tuple[int, list[tuple[str, int]]]:
    """Parse a SUBSCRIBE: ``(packet_id, [(filter, qos), ...])``; ValueError if malformed."""
    r, packet_id = _read_filter_prelude(packet, MQTT_CMD_SUBSCRIBE, "a SUBSCRIBE", version)
    filters = []
    while not r.done:
        topic = r.text()
        check_topic_filter(topic, "SUBSCRIBE filter")
        options = r.u8()
        if options & (0xC0 if version == 5 else 0xFC):
            raise ValueError("SUBSCRIBE: reserved option bits set")
        filters.append((topic, _check_qos(options & 3, "SUBSCRIBE QoS")))
    if not filters:
        raise ValueError("SUBSCRIBE without a topic filter")
    return packet_id, filters


def parse_unsubscribe(packet: bytes, version: int = 4) -> tuple[int, list[str]]:
    """Parse an UNSUBSCRIBE: ``(packet_id, [filter, ...])``; ValueError if malformed."""
    r, packet_id = _read_filter_prelude(packet, MQTT_CMD_UNSUBSCRIBE, "an UNSUBSCRIBE",
                                        version)
    filters = []
    while not r.done:
        topic = r.text()
        check_topic_filter(topic, "UNSUBSCRIBE filter")
        filters.append(topic)
    if not filters:
        raise ValueError("UNSUBSCRIBE without a topic filter")
    return packet_id, filters


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter (``+`` one level, ``#`` the rest).

    Topics starting with ``$`` (``$SYS/...``) match only filters that start with ``$``.
    """
    if not isinstance(topic_filter, str) or not isinstance(topic, str):
        raise TypeError("topic_filter and topic must be str")
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False
    for index, part in enumerate(wanted):
        if part == "#":
            return True
        if index >= len(levels):
            return False
        if part != "+" and part != levels[index]:
            return False
    return len(wanted) == len(levels)


# -- a broker -------------------------------------------------------------------------


def _forwardable(properties: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """A PUBLISH's properties (``MqttMessage.properties()``) as ``mqtt_pub`` takes them,
    less those that only concern the hop they arrived on (MQTT 5, 3.3.4)."""
    out: list[tuple[int, Any]] = []
    for prop in properties:
        prop_id = prop["id"]
        if prop_id in (MQTT_PROP_TOPIC_ALIAS, MQTT_PROP_SUBSCRIPTION_IDENTIFIER):
            continue
        kind = _PROP_TYPES.get(prop_id)
        if kind == MQTT_PROP_TYPE_STRING_PAIR:
            out.append((prop_id, (prop["key"], prop["val"])))
        elif kind in (MQTT_PROP_TYPE_STRING, MQTT_PROP_TYPE_BINARY_DATA):
            out.append((prop_id, prop["val"]))
        elif kind is not None:
            out.append((prop_id, prop["iv"]))
    return out


@dataclass
class _Session:
    conn: Connection
    client_id: str
    subscriptions: dict[str, int] = field(default_factory=dict)
    will: Optional[tuple[str, bytes, int, bool]] = None


class MqttBroker:
    """A small MQTT broker: pass it as the handler of ``Manager.mqtt_listen``.

    Accepts every client (MQTT 3.1.1 and 5), routes each PUBLISH to the clients whose
    subscriptions match its topic (``+`` and ``#`` wildcards), at the lower of the
    publish and subscription QoS, keeps retained messages (``retain=False`` turns that
    off) and publishes a client's will when it vanishes without DISCONNECT. MQTT 5
    subscribers get a message's properties as its publisher sent them. Sessions
    are not persisted: a client that reconnects starts afresh. Malformed packets close
    the client's connection (C refuses most before they reach this class).
    """

    #: The events it needs: ``mqtt_listen(url, broker, events=MqttBroker.EVENTS)`` keeps
    #: the others (MG_EV_POLL, MG_EV_READ, ...) in C.
    EVENTS = (MG_EV_MQTT_CMD, MG_EV_MQTT_MSG, MG_EV_CLOSE)

    def __init__(self, *, retain: bool = True) -> None:
        self._sessions: dict[int, _Session] = {}
        self._retained: dict[str, tuple[bytes, int, MqttProperties]] = {}
        self._retain = bool(retain)
        # Who gets a topic, at which QoS: worked out once per topic, forgotten whenever
        # a session or a subscription changes. Bounded: topics may be countless.
        self._routes: dict[str, list[tuple[_Session, int]]] = {}

    @property
    def clients(self) -> list[str]:
        """The client ids of the connected clients."""
        return [s.client_id for s in self._sessions.values()]

    @property
    def retained(self) -> dict[str, bytes]:
        """The retained messages, by topic."""
        return {topic: entry[0] for topic, entry in self._retained.items()}

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        """The event handler."""
        if ev == MG_EV_MQTT_MSG:
            session = self._sessions.get(conn.id)
            if session is not None:
                properties = _forwardable(data.properties()) if conn.mqtt_version == 5 else []
                self.publish(data.topic, data.data, data.qos, data.retain,
                             properties=properties)
        elif ev == MG_EV_MQTT_CMD:
            try:
                self._command(conn, data)
            except ValueError as exc:
                conn.error(f"MQTT: {exc}"[:63])
        elif ev == MG_EV_CLOSE:
            session = self._sessions.pop(conn.id, None)
            self._routes.clear()
            if session is not None and session.will is not None:
                self.publish(*session.will)

    def _command(self, conn: Connection, msg: MqttMessage) -> None:
        cmd = msg.cmd
        if cmd == MQTT_CMD_CONNECT:
            info = parse_connect(msg.dgram)
            if not info.client_id and not info.clean_session:
                conn.mqtt_connack(0x85 if info.version == 5 else 2)
                conn.drain()
                return
            client_id = info.client_id or f"auto-{conn.id}"
            for other in list(self._sessions.values()):
                if other.client_id == client_id:  # a client id is connected once
                    del self._sessions[other.conn.id]
                    other.conn.close()
            session = _Session(conn, client_id)
            if info.will_topic is not None:
                session.will = (info.will_topic, info.will_message, info.will_qos,
                                info.will_retain)
            self._sessions[conn.id] = session
            self._routes.clear()
            conn.mqtt_connack(0)
            return
        current = self._sessions.get(conn.id)
        if current is None:
            return
        session = current
        if cmd == MQTT_CMD_SUBSCRIBE:
            packet_id, filters = parse_subscribe(msg.dgram, conn.mqtt_version)
            session.subscriptions.update(filters)
            self._routes.clear()
            conn.mqtt_suback(packet_id, [qos for _topic, qos in filters])
            for topic_filter, qos in filters:
                for topic, (payload, stored_qos, props) in self._retained.items():
                    if topic_matches(topic_filter, topic):
                        conn.mqtt_pub(topic, payload, min(qos, stored_qos), retain=True,
                                      properties=props if conn.mqtt_version == 5 else None)
        elif cmd == MQTT_CMD_UNSUBSCRIBE:
            packet_id, topics = parse_unsubscribe(msg.dgram, conn.mqtt_version)
            for topic in topics:
                session.subscriptions.pop(topic, None)
            self._routes.clear()
            conn.mqtt_unsuback(packet_id, len(topics))
        elif cmd == MQTT_CMD_PINGREQ:
            conn.mqtt_pong()
        elif cmd == MQTT_CMD_DISCONNECT:
            session.will = None
            del self._sessions[conn.id]
            self._routes.clear()
            conn.drain()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, *,
                properties: MqttProperties = ()) -> int:
        """Deliver a message to every matching subscriber; returns how many got it.

        ``properties`` (``(MQTT_PROP_*, value)`` pairs) go to MQTT 5 subscribers only.
        """
        if retain and self._retain:
            if payload:
                self._retained[topic] = (payload, qos, properties)
            else:
                self._retained.pop(topic, None)
        routes = self._routes.get(topic)
        if routes is None:
            routes = self._route(topic)
        delivered = 0
        for session, granted in routes:
            if session.conn.is_closing:
                continue
            session.conn.mqtt_pub(
                topic, payload, min(qos, granted),
                properties=properties if session.conn.mqtt_version == 5 else None)
            delivered += 1
        return delivered

    def _route(self, topic: str) -> list[tuple[_Session, int]]:
        routes = []
        for session in self._sessions.values():
            granted = max((sub_qos for topic_filter, sub_qos in session.subscriptions.items()
                           if topic_matches(topic_filter, topic)), default=None)
            if granted is not None:
                routes.append((session, granted))
        if len(self._routes) >= 4096:
            self._routes.clear()
        self._routes[topic] = routes
        return routes
