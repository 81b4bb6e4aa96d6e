"""A complete small MQTT broker to pass to ``Manager.mqtt_listen``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ..constants import MG_EV_CLOSE, MG_EV_MQTT_CMD, MG_EV_MQTT_MSG
from .constants import (
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
)
from .message import MqttMessage
from .packets import parse_connect, parse_subscribe, parse_unsubscribe
from .properties import MqttProperties
from .topics import topic_matches

if TYPE_CHECKING:
    from ..connection import Connection

__all__ = ["MqttBroker"]


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
