"""A complete MQTT 3.1.1 and 5 broker to pass to ``Manager.mqtt_listen``.

The parts, by module: :mod:`.packets` parses what clients send, :mod:`.wire` builds what
the broker sends, :mod:`.sessions` holds each client id's state, :mod:`.persist` stores it
in SQLite when asked to, and this module routes messages between sessions.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Optional, Union

from ..constants import MG_EV_CLOSE, MG_EV_MQTT_CMD
from . import wire
from .client import broker_mode, send_many
from .constants import (
    _PROP_TYPES,
    MQTT_CMD_CONNECT,
    MQTT_CMD_DISCONNECT,
    MQTT_CMD_PINGREQ,
    MQTT_CMD_PUBACK,
    MQTT_CMD_PUBCOMP,
    MQTT_CMD_PUBLISH,
    MQTT_CMD_PUBREC,
    MQTT_CMD_PUBREL,
    MQTT_CMD_SUBSCRIBE,
    MQTT_CMD_UNSUBSCRIBE,
    MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER,
    MQTT_PROP_AUTHENTICATION_METHOD,
    MQTT_PROP_MAXIMUM_PACKET_SIZE,
    MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
    MQTT_PROP_REASON_STRING,
    MQTT_PROP_RECEIVE_MAXIMUM,
    MQTT_PROP_SERVER_KEEP_ALIVE,
    MQTT_PROP_SESSION_EXPIRY_INTERVAL,
    MQTT_PROP_SUBSCRIPTION_IDENTIFIER,
    MQTT_PROP_TOPIC_ALIAS,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM,
    MQTT_PROP_TYPE_BINARY_DATA,
    MQTT_PROP_TYPE_STRING,
    MQTT_PROP_TYPE_STRING_PAIR,
    MQTT_PROP_WILL_DELAY_INTERVAL,
)
from .message import MqttMessage
from .packets import parse_connect, parse_subscribe_options, parse_unsubscribe
from .properties import MqttProperties
from .sessions import NEVER, Message, Outgoing, Session, Subscription
from .topics import topic_matches

if TYPE_CHECKING:
    from ..connection import Connection
    from ..timers import Timer
    from .persist import Store

__all__ = ["MqttBroker"]

# MQTT 5 reason codes the broker sends (spec 2.4).
_NO_SUBSCRIPTION_EXISTED = 0x11
_MALFORMED = 0x81
_PROTOCOL_ERROR = 0x82
_SERVER_UNAVAILABLE_V4 = 3
_BAD_AUTHENTICATION_METHOD = 0x8C
_SESSION_TAKEN_OVER = 0x8E
_TOPIC_FILTER_INVALID = 0x8F
_TOPIC_ALIAS_INVALID = 0x94
_QUOTA_EXCEEDED = 0x97
_DISCONNECT_WITH_WILL = 0x04

_Route = tuple[Session, int, bool, tuple[int, ...], bool]  # session, qos, RAP, ids, no local
_Routes = tuple[dict[tuple[int, bool], list[tuple[Session, int]]], list[_Route],
                list[tuple[str, str]]]


def _forwardable(properties: list[dict[str, Any]]) -> tuple[list[tuple[int, Any]],
                                                             Optional[int], Optional[int]]:
    """A PUBLISH's properties (``MqttMessage.properties()``): ``(those forwarded as they
    are, topic alias, message expiry interval)``. A subscription identifier from a
    client is a protocol error (ValueError)."""
    out: list[tuple[int, Any]] = []
    alias = expiry = None
    for prop in properties:
        prop_id = prop["id"]
        if prop_id == MQTT_PROP_TOPIC_ALIAS:
            alias = prop["iv"]
            continue
        if prop_id == MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
            expiry = prop["iv"]
            continue
        if prop_id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER:
            raise ValueError("PUBLISH from a client with a subscription identifier")
        kind = _PROP_TYPES.get(prop_id)
        if kind == MQTT_PROP_TYPE_STRING_PAIR:
            out.append((prop_id, (prop["key"], prop["val"])))
        elif kind in (MQTT_PROP_TYPE_STRING, MQTT_PROP_TYPE_BINARY_DATA):
            out.append((prop_id, prop["val"]))
        elif kind is not None:
            out.append((prop_id, prop["iv"]))
    return out, alias, expiry


class _Refused(Exception):
    """A client broke a rule: MQTT 5 clients get DISCONNECT with this reason code."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason


class MqttBroker:
    """An MQTT 3.1.1 and 5 broker: pass it as the handler of ``Manager.mqtt_listen``.

    Routes PUBLISH to matching subscriptions (``+``/``#`` wildcards, ``$share/group/``
    shared subscriptions) at QoS 0, 1 and 2, keeps retained messages and publishes wills.
    Sessions outlive their connection when the client asks (clean session 0; MQTT 5
    Session Expiry Interval): subscriptions are kept, QoS 1 and 2 messages queued, and
    unacknowledged ones resent with DUP on reconnect. MQTT 5 adds assigned client ids,
    topic aliases, flow control (Receive Maximum), Maximum Packet Size, message expiry,
    subscription options and identifiers, will delay and reason codes.

    Limits keep memory bounded (see docs): ``max_sessions`` (a new client id beyond it
    is refused: CONNACK 3, MQTT 5 0x97), ``max_queued_messages`` and
    ``max_queued_bytes`` per session (a message that does not fit is dropped for that
    session and counted in :attr:`dropped`), ``max_inflight`` (unacknowledged QoS 1/2
    messages per client; further ones wait in the queue), ``max_retained``.
    ``persist="path"`` keeps retained messages and sessions in SQLite across restarts.
    ``max_keepalive`` (MQTT 5): a client asking for a longer keepalive, or none, gets
    this one as Server Keep Alive; ``topic_alias_maximum``: aliases a client may use.
    """

    #: The events it needs: ``mqtt_listen(url, broker, events=MqttBroker.EVENTS)`` keeps
    #: the others (MG_EV_POLL, MG_EV_READ, ...) in C.
    EVENTS = (MG_EV_MQTT_CMD, MG_EV_CLOSE)

    def __init__(self, *, retain: bool = True, max_sessions: int = 10_000,
                 max_queued_messages: int = 1000, max_queued_bytes: int = 1 << 20,
                 max_inflight: int = 20, max_retained: int = 10_000,
                 topic_alias_maximum: int = 10, max_keepalive: Optional[int] = None,
                 max_session_expiry: Optional[int] = None,
                 persist: Optional[str] = None) -> None:
        for name, value, low, high in (
                ("max_sessions", max_sessions, 1, 1 << 31),
                ("max_queued_messages", max_queued_messages, 0, 1 << 31),
                ("max_queued_bytes", max_queued_bytes, 0, 1 << 62),
                ("max_inflight", max_inflight, 1, 65535),
                ("max_retained", max_retained, 0, 1 << 31),
                ("topic_alias_maximum", topic_alias_maximum, 0, 65535),
                ("max_keepalive", 0 if max_keepalive is None else max_keepalive,
                 0, 65535),
                ("max_session_expiry", 0 if max_session_expiry is None else max_session_expiry,
                 0, NEVER)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be int, not {type(value).__name__}")
            if not low <= value <= high:
                raise ValueError(f"{name} must be from {low} to {high}, not {value}")
        self._retain = bool(retain)
        self.max_sessions = max_sessions
        self.max_queued_messages = max_queued_messages
        self.max_queued_bytes = max_queued_bytes
        self.max_inflight = max_inflight
        self.max_retained = max_retained
        self.topic_alias_maximum = topic_alias_maximum
        self.max_keepalive = max_keepalive
        self.max_session_expiry = max_session_expiry
        #: Messages not delivered to a session because its queue was full.
        self.dropped = 0
        self._sessions: dict[str, Session] = {}  # by client id
        self._conns: dict[int, Session] = {}  # by connection id, connected ones
        self._retained: dict[str, Message] = {}
        # Shared subscriptions: (group, filter) -> the member sessions, in join order.
        self._shared: dict[tuple[str, str], list[Session]] = {}
        self._shared_next: dict[tuple[str, str], int] = {}
        # Who gets a topic: worked out once per topic, forgotten whenever a session or a
        # subscription changes. Bounded: topics may be countless.
        self._routes: dict[str, _Routes] = {}
        self._timer: Optional[Timer] = None
        self._store: Optional[Store] = None
        if persist is not None:
            from .persist import Store

            self._store = Store(persist)
            sessions, retained = self._store.load()
            for message in retained:
                self._retained[message.topic] = message
            for session in sessions:
                self._sessions[session.client_id] = session
                for sub in session.subscriptions.values():
                    if sub.group is not None:
                        self._shared.setdefault((sub.group, sub.topic_filter),
                                                []).append(session)

    # -- what users look at -----------------------------------------------------------

    @property
    def clients(self) -> list[str]:
        """The client ids of the connected clients."""
        return [s.client_id for s in self._conns.values()]

    @property
    def retained(self) -> dict[str, bytes]:
        """The retained messages, by topic."""
        return {topic: m.payload for topic, m in self._retained.items()}

    def close(self) -> None:
        """Stop the broker's timer and close its store (persisted state stays on disk)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- events -----------------------------------------------------------------------

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        """The event handler."""
        if ev == MG_EV_MQTT_CMD:
            try:
                if data.cmd == MQTT_CMD_PUBLISH:
                    session = self._conns.get(conn.id)
                    if session is not None:
                        self._on_publish(session, conn, data)
                else:
                    self._command(conn, data)
            except _Refused as exc:
                self._refuse(conn, exc.reason, str(exc))
            except ValueError as exc:
                self._refuse(conn, _MALFORMED, str(exc))
            self._commit()
        elif ev == MG_EV_CLOSE:
            self._on_close(conn)
            self._commit()

    def _commit(self) -> None:
        # Before the poll writes any acknowledgement queued by this event. Called in
        # each branch of __call__ (not after the chain) so that the handler keeps the
        # shape pymongoose infers its events from.
        if self._store is not None:
            self._store.commit()

    def _refuse(self, conn: Connection, reason: int, text: str) -> None:
        """Send MQTT 5 clients DISCONNECT with ``reason``; close the connection."""
        if conn.is_closing:
            return
        if conn.mqtt_version == 5 and conn.id in self._conns:
            conn.send(wire.disconnect(reason, [(MQTT_PROP_REASON_STRING, text[:200])]))
            conn.drain()
        else:
            conn.error(f"MQTT: {text}"[:63])

    def _command(self, conn: Connection, msg: MqttMessage) -> None:
        cmd = msg.cmd
        if cmd == MQTT_CMD_CONNECT:
            self._on_connect(conn, msg)
            return
        session = self._conns.get(conn.id)
        if session is None:
            return
        if cmd == MQTT_CMD_PUBACK:
            out = session.inflight.get(msg.id)
            if out is not None and out.qos == 1:
                self._acked(session, msg.id)
        elif cmd == MQTT_CMD_PUBREC:
            out = session.inflight.get(msg.id)
            if out is not None and out.qos == 2:
                dgram = msg.dgram
                if session.version == 5 and len(dgram) > 4 and dgram[4] >= 0x80:
                    self._acked(session, msg.id)  # refused: the flow ends here
                elif not out.released:
                    out.released = True  # C sent PUBREL
                    if self._store is not None:
                        self._store.released(out)
        elif cmd == MQTT_CMD_PUBCOMP:
            out = session.inflight.get(msg.id)
            if out is not None and out.qos == 2:
                self._acked(session, msg.id)
        elif cmd == MQTT_CMD_PUBREL:
            if msg.id in session.awaiting_rel:  # C sent PUBCOMP
                session.awaiting_rel.discard(msg.id)
                if self._store is not None:
                    self._store.save_session(session)
        elif cmd == MQTT_CMD_SUBSCRIBE:
            self._on_subscribe(session, conn, msg)
        elif cmd == MQTT_CMD_UNSUBSCRIBE:
            self._on_unsubscribe(session, conn, msg)
        elif cmd == MQTT_CMD_PINGREQ:
            conn.send(b"\xd0\x00")
        elif cmd == MQTT_CMD_DISCONNECT:
            self._on_disconnect(session, conn, msg)

    # -- connecting -------------------------------------------------------------------

    def _on_connect(self, conn: Connection, msg: MqttMessage) -> None:
        info = parse_connect(msg.dgram)
        v5 = info.version == 5
        props = dict(info.properties)
        if v5:
            expiry = props.get(MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0)
        else:
            expiry = 0 if info.clean_session else NEVER
        granted_expiry = expiry
        if self.max_session_expiry is not None and expiry > self.max_session_expiry:
            granted_expiry = self.max_session_expiry
        client_id, assigned = info.client_id, False
        if not client_id:
            if not v5 and not info.clean_session:
                conn.mqtt_connack(2)  # identifier rejected (MQTT 3.1.1, 3.1.3-8)
                conn.drain()
                return
            client_id, assigned = f"auto-{uuid.uuid4().hex}", True
        existing = self._sessions.get(client_id)
        if existing is None and len(self._sessions) >= self.max_sessions:
            code = _QUOTA_EXCEEDED if v5 else _SERVER_UNAVAILABLE_V4
            reason = [(MQTT_PROP_REASON_STRING, "too many sessions")] if v5 else []
            conn.send(wire.connack(False, code, info.version, reason))
            conn.drain()
            return
        keepalive = -1  # the client's
        if v5 and self.max_keepalive is not None and (
                info.keepalive == 0 or info.keepalive > self.max_keepalive):
            keepalive = self.max_keepalive
        if v5 and MQTT_PROP_AUTHENTICATION_METHOD in props:  # no enhanced auth here
            conn.send(wire.connack(False, _BAD_AUTHENTICATION_METHOD, 5))
            conn.drain()
            return
        broker_mode(conn, keepalive)
        self._ensure_timer(conn)
        if existing is not None and existing.conn is not None:
            self._take_over(existing, resumed=not info.clean_session)
        present = existing is not None and not info.clean_session
        if existing is not None and not present:
            self._end_session(existing)
        session = existing if present and existing is not None else Session(
            client_id, info.version, granted_expiry)
        self._sessions[client_id] = session
        session.conn = conn
        session.version = info.version
        session.expiry = granted_expiry
        session.expires_at = None
        session.will_at = None  # a delayed will is off once its session is back
        session.aliases = {}
        session.receive_max = props.get(MQTT_PROP_RECEIVE_MAXIMUM, 65535) if v5 else 65535
        session.max_packet = props.get(MQTT_PROP_MAXIMUM_PACKET_SIZE, 0) if v5 else 0
        session.will = None
        session.will_delay = 0
        if info.will_topic is not None:
            will_props, _alias, will_expiry = _forwardable(
                [{"id": i, "iv": v if isinstance(v, int) else 0,
                  "key": v[0] if isinstance(v, tuple) else None,
                  "val": v[1] if isinstance(v, tuple) else (None if isinstance(v, int) else v)}
                 for i, v in info.will_properties if i != MQTT_PROP_WILL_DELAY_INTERVAL])
            session.will = Message(info.will_topic, info.will_message, info.will_qos,
                                   info.will_retain, tuple(will_props),
                                   # the interval, made a deadline when published
                                   None if will_expiry is None else float(will_expiry))
            session.will_delay = dict(info.will_properties).get(MQTT_PROP_WILL_DELAY_INTERVAL, 0)
        self._conns[conn.id] = session
        self._routes.clear()
        if self._store is not None:
            self._store.save_session(session)
        ack_props: list[tuple[int, Any]] = []
        if v5:
            if assigned:
                ack_props.append((MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, client_id))
            if self.topic_alias_maximum:
                ack_props.append((MQTT_PROP_TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum))
            if granted_expiry != expiry:
                ack_props.append((MQTT_PROP_SESSION_EXPIRY_INTERVAL, granted_expiry))
            if keepalive >= 0:
                ack_props.append((MQTT_PROP_SERVER_KEEP_ALIVE, keepalive))
        conn.send(wire.connack(present, 0, info.version, ack_props))
        if present:
            self._resend(session)

    def _take_over(self, session: Session, resumed: bool) -> None:
        """A new connection claims ``session``: close the old one (MQTT 5: DISCONNECT
        0x8E); its will goes out now unless the session goes on and the will waits."""
        old = session.conn
        assert old is not None
        del self._conns[old.id]
        session.conn = None
        if old.mqtt_version == 5:
            old.send(wire.disconnect(_SESSION_TAKEN_OVER))
            old.drain()
        else:
            old.close()
        will, session.will = session.will, None
        if will is not None and not (resumed and session.will_delay):
            self._publish_will(will)

    def _resend(self, session: Session) -> None:
        """After a reconnect: what was in flight again, in order (PUBLISH with DUP,
        or PUBREL), then what queued meanwhile."""
        conn = session.conn
        assert conn is not None
        for out in session.inflight.values():
            if out.released:
                conn.send(wire.ack(MQTT_CMD_PUBREL, out.packet_id))
            else:
                topic_field, rest = out.message.parts(session.version, out.sub_ids)
                conn.send(wire.publish(out.qos, out.retain, True, out.packet_id, topic_field,
                                       rest))
        self._fill(session)

    def _on_disconnect(self, session: Session, conn: Connection, msg: MqttMessage) -> None:
        dgram = msg.dgram
        reason = dgram[2] if session.version == 5 and len(dgram) > 2 else 0
        if session.version == 5 and len(dgram) > 3:
            props = dict(wire.decode_properties(dgram, 3)[0])
            new_expiry = props.get(MQTT_PROP_SESSION_EXPIRY_INTERVAL)
            if new_expiry is not None:
                if session.expiry == 0 and new_expiry != 0:
                    raise _Refused(_PROTOCOL_ERROR, "session expiry set at DISCONNECT")
                session.expiry = new_expiry
        if reason != _DISCONNECT_WITH_WILL:
            session.will = None
        conn.drain()

    def _on_close(self, conn: Connection) -> None:
        session = self._conns.pop(conn.id, None)
        if session is None or session.conn is not conn:
            return
        session.conn = None
        session.aliases = {}
        will, session.will = session.will, None
        if will is not None:
            delay = min(session.will_delay, session.expiry)
            if delay == 0:
                self._publish_will(will)
            else:
                session.will = will
                session.will_at = time.monotonic() + delay
        if session.expiry == 0:
            self._end_session(session)
        else:
            if session.expiry != NEVER:
                session.expires_at = time.monotonic() + session.expiry
            if self._store is not None:
                self._store.save_session(session)

    def _end_session(self, session: Session) -> None:
        """Forget ``session``: its subscriptions, queue and messages in flight. A will
        still waiting for its delay goes out now."""
        if self._sessions.get(session.client_id) is session:
            del self._sessions[session.client_id]
        for sub in session.subscriptions.values():
            if sub.group is not None:
                self._leave_group(session, sub)
        session.subscriptions.clear()
        session.inflight.clear()
        session.queue.clear()
        session.queued_bytes = 0
        session.awaiting_rel.clear()
        self._routes.clear()
        if self._store is not None:
            self._store.delete_session(session.client_id)
        if session.will is not None and session.will_at is not None:
            will, session.will = session.will, None
            self._publish_will(will)

    def _publish_will(self, will: Message) -> None:
        if will.expires_at is not None:  # its expiry interval: it starts now
            will = Message(will.topic, will.payload, will.qos, will.retain, will.props,
                           time.time() + will.expires_at)
        self._dispatch(will, None)

    # -- time -------------------------------------------------------------------------

    def _ensure_timer(self, conn: Connection) -> None:
        if self._timer is None or not self._timer.active:
            self._timer = conn.manager.timer_add(1000, self._tick, repeat=True)

    def _tick(self) -> None:
        """Publish delayed wills that are due and end expired sessions (every second)."""
        now = time.monotonic()
        for session in list(self._sessions.values()):
            if session.conn is not None:
                continue
            if session.will_at is not None and now >= session.will_at:
                will, session.will, session.will_at = session.will, None, None
                if will is not None:
                    self._publish_will(will)
            if session.expires_at is not None and now >= session.expires_at:
                self._end_session(session)
        if self._store is not None:
            self._store.commit()

    # -- subscriptions ----------------------------------------------------------------

    def _on_subscribe(self, session: Session, conn: Connection, msg: MqttMessage) -> None:
        packet_id, filters, props = parse_subscribe_options(msg.dgram, session.version)
        sub_id = 0
        for prop_id, value in props:
            if prop_id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER:
                if value == 0:
                    raise _Refused(_PROTOCOL_ERROR, "subscription identifier 0")
                sub_id = value
        codes = []
        retained: list[tuple[Subscription, Message]] = []
        for full_filter, options in filters:
            group = None
            topic_filter = full_filter
            if full_filter.startswith("$share/"):
                parts = full_filter.split("/", 2)
                if (len(parts) < 3 or not parts[1] or not parts[2] or "+" in parts[1]
                        or "#" in parts[1]):
                    codes.append(_TOPIC_FILTER_INVALID if session.version == 5 else 0x80)
                    continue
                if options & 4 and session.version == 5:
                    raise _Refused(_PROTOCOL_ERROR, "No Local on a shared subscription")
                group, topic_filter = parts[1], parts[2]
            sub = Subscription(topic_filter, options if session.version == 5 else options & 3,
                               sub_id, group)
            old = session.subscriptions.get(full_filter)
            session.subscriptions[full_filter] = sub
            if group is not None and old is None:
                self._shared.setdefault((group, topic_filter), []).append(session)
            codes.append(sub.qos)
            if group is None and (sub.retain_handling == 0 or
                                  (sub.retain_handling == 1 and old is None)):
                retained.extend((sub, m) for topic, m in self._retained.items()
                                if topic_matches(topic_filter, topic))
        self._routes.clear()
        if self._store is not None:
            self._store.save_session(session)
        conn.send(wire.suback(packet_id, codes, session.version))
        now = time.time()
        for sub, message in retained:
            if message.expired(now):
                continue
            self._send(session, message, min(sub.qos, message.qos), True,
                       (sub.identifier,) if sub.identifier else ())

    def _on_unsubscribe(self, session: Session, conn: Connection, msg: MqttMessage) -> None:
        packet_id, filters = parse_unsubscribe(msg.dgram, session.version)
        codes = []
        for full_filter in filters:
            sub = session.subscriptions.pop(full_filter, None)
            codes.append(_NO_SUBSCRIPTION_EXISTED if sub is None else 0)
            if sub is not None and sub.group is not None:
                self._leave_group(session, sub)
        self._routes.clear()
        if self._store is not None:
            self._store.save_session(session)
        conn.send(wire.unsuback(packet_id, codes, session.version))

    def _leave_group(self, session: Session, sub: Subscription) -> None:
        assert sub.group is not None
        key = (sub.group, sub.topic_filter)
        members = self._shared.get(key)
        if members is not None and session in members:
            members.remove(session)
            if not members:
                del self._shared[key]
                self._shared_next.pop(key, None)

    # -- publishing -------------------------------------------------------------------

    def _on_publish(self, session: Session, conn: Connection, msg: MqttMessage) -> None:
        qos = msg.qos
        packet_id = msg.id
        topic = msg.topic
        props: tuple[tuple[int, Any], ...] = ()
        expires_at = None
        if session.version == 5:
            found = msg.properties()
            if found:
                forwarded, alias, expiry = _forwardable(found)
                props = tuple(forwarded)
                if alias is not None:
                    if alias == 0 or alias > self.topic_alias_maximum:
                        raise _Refused(_TOPIC_ALIAS_INVALID, f"topic alias {alias} is not "
                                       f"from 1 to {self.topic_alias_maximum}")
                    if topic:
                        session.aliases[alias] = topic
                    else:
                        topic = session.aliases.get(alias, "")
                        if not topic:
                            raise _Refused(_PROTOCOL_ERROR, f"topic alias {alias} unknown")
                if expiry is not None:
                    expires_at = time.time() + expiry
            if not topic:
                raise _Refused(_PROTOCOL_ERROR, "PUBLISH without a topic or topic alias")
        if qos == 2:
            if packet_id in session.awaiting_rel:  # a resent PUBLISH: delivered already
                return  # (C has answered PUBREC again)
            session.awaiting_rel.add(packet_id)
        self._dispatch(Message(topic, msg.data, qos, msg.retain, props, expires_at), session)
        if qos == 2 and self._store is not None:
            self._store.save_session(session)
        # C has queued PUBACK/PUBREC already; the poll writes it after this handler
        # returns, so after the store's commit.

    def publish(self, topic: str, payload: Union[bytes, str], qos: int = 0,
                retain: bool = False, *, properties: MqttProperties = ()) -> int:
        """Publish a message as if a client had: returns how many sessions it went to.

        ``payload`` is bytes, or str sent as UTF-8. ``properties`` (``(MQTT_PROP_*,
        value)`` pairs) go to MQTT 5 subscribers only.
        """
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        expires_at = None
        props = []
        for prop_id, value in properties:
            if prop_id == MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
                expires_at = time.time() + value
            else:
                props.append((prop_id, value))
        delivered = self._dispatch(Message(topic, bytes(payload), qos, retain, tuple(props),
                                           expires_at), None)
        if self._store is not None:
            self._store.commit()
        return delivered

    def _dispatch(self, message: Message, publisher: Optional[Session]) -> int:
        """Retain ``message`` if it says so and send it to every matching session."""
        if message.retain and self._retain:
            self._keep_retained(message)
        route = self._routes.get(message.topic)
        if route is None:
            route = self._route(message.topic)
        plain, special, groups = route
        delivered = 0
        qos = message.qos
        for (version, rap), members in plain.items():
            delivered += len(members)
            retain = rap and message.retain
            if qos == 0 and message.expires_at is None:
                # The common case: one packet, queued on every connection in one C call.
                conns = [s.conn for s, _granted in members if s.conn is not None]
                if conns:
                    topic_field, rest = message.parts(version)
                    send_many(conns, wire.publish(0, retain, False, 0, topic_field, rest))
                continue
            for session, granted in members:
                self._send(session, message, granted if granted < qos else qos, retain, ())
        for session, granted, rap, sub_ids, no_local in special:
            if no_local and session is publisher:
                found = self._route_session(session, message.topic, skip_no_local=True)
                if found is None:
                    continue
                granted, rap, sub_ids = found
            delivered += 1
            self._send(session, message, granted if granted < qos else qos,
                       rap and message.retain, sub_ids)
        for group_key in groups:
            members_ = self._shared.get(group_key)
            if not members_:
                continue
            start = self._shared_next.get(group_key, 0)
            chosen = members_[start % len(members_)]
            for step in range(len(members_)):  # the next member connected, if any
                candidate = members_[(start + step) % len(members_)]
                if candidate.conn is not None:
                    chosen = candidate
                    start += step
                    break
            self._shared_next[group_key] = (start + 1) % len(members_)
            sub = chosen.subscriptions.get(f"$share/{group_key[0]}/{group_key[1]}")
            if sub is None:
                continue
            delivered += 1
            self._send(chosen, message, min(sub.qos, qos),
                       sub.retain_as_published and message.retain,
                       (sub.identifier,) if sub.identifier else ())
        return delivered

    def _route(self, topic: str) -> _Routes:
        """Who gets messages on ``topic``: sessions with nothing per copy, by (MQTT
        version, retain as published); the others one by one; shared groups."""
        plain: dict[tuple[int, bool], list[tuple[Session, int]]] = {}
        special: list[_Route] = []
        for session in self._sessions.values():
            found = self._route_session(session, topic, skip_no_local=False)
            if found is None:
                continue
            granted, rap, sub_ids = found
            no_local = any(s.no_local for s in session.subscriptions.values()
                           if s.group is None and topic_matches(s.topic_filter, topic))
            if sub_ids or no_local or session.max_packet:
                special.append((session, granted, rap, sub_ids, no_local))
            else:
                plain.setdefault((session.version, rap), []).append((session, granted))
        groups = [key for key in self._shared if topic_matches(key[1], topic)]
        if len(self._routes) >= 4096:
            self._routes.clear()
        self._routes[topic] = (plain, special, groups)
        return plain, special, groups

    @staticmethod
    def _route_session(session: Session, topic: str, *, skip_no_local: bool
                       ) -> Optional[tuple[int, bool, tuple[int, ...]]]:
        """``(highest QoS, retain as published, subscription ids)`` over the session's
        (non-shared) subscriptions that match ``topic``; None when none does."""
        granted = -1
        rap = False
        ids: list[int] = []
        for sub in session.subscriptions.values():
            if sub.group is not None or (skip_no_local and sub.no_local):
                continue
            if topic_matches(sub.topic_filter, topic):
                granted = max(granted, sub.qos)
                rap = rap or sub.retain_as_published
                if sub.identifier:
                    ids.append(sub.identifier)
        if granted < 0:
            return None
        return granted, rap, tuple(ids)

    def _keep_retained(self, message: Message) -> None:
        if not message.payload:
            if self._retained.pop(message.topic, None) is not None and self._store:
                self._store.delete_retained(message.topic)
            return
        if message.topic not in self._retained and len(self._retained) >= self.max_retained:
            return
        self._retained[message.topic] = message
        if self._store is not None:
            self._store.save_retained(message)

    def _send(self, session: Session, message: Message, qos: int, retain: bool,
              sub_ids: tuple[int, ...]) -> None:
        """One message to one session: sent now, queued (QoS 1 and 2) or dropped."""
        if qos == 0:
            conn = session.conn
            if conn is None or message.expired(time.time()):
                return  # QoS 0 is not queued for an offline client
            topic_field, rest = message.parts(session.version, sub_ids)
            data = wire.publish(0, retain, False, 0, topic_field, rest)
            if not session.max_packet or len(data) <= session.max_packet:
                conn.send(data)
            return
        out = Outgoing(message, qos, retain, sub_ids)
        if (session.conn is not None and not session.queue
                and len(session.inflight) < min(session.receive_max, self.max_inflight)):
            self._transmit(session, out)
            return
        if (len(session.queue) >= self.max_queued_messages
                or session.queued_bytes + message.size > self.max_queued_bytes):
            self.dropped += 1
            return
        session.queue.append(out)
        session.queued_bytes += message.size
        if self._store is not None:
            self._store.add(session, out)

    def _transmit(self, session: Session, out: Outgoing) -> None:
        conn = session.conn
        assert conn is not None
        topic_field, rest = out.message.parts(session.version, out.sub_ids)
        packet_id = session.new_packet_id()
        data = wire.publish(out.qos, out.retain, False, packet_id, topic_field, rest)
        if session.max_packet and len(data) > session.max_packet:
            if self._store is not None and out.row:
                self._store.remove(out)
            return  # too big for this client: as if delivered (MQTT 5, 3.1.2.11.4)
        out.packet_id = packet_id
        session.inflight[packet_id] = out
        if self._store is not None:
            self._store.sent(session, out)
        conn.send(data)

    def _acked(self, session: Session, packet_id: int) -> None:
        out = session.inflight.pop(packet_id)
        if self._store is not None:
            self._store.remove(out)
        self._fill(session)

    def _fill(self, session: Session) -> None:
        """Send queued messages while the client's window has room."""
        window = min(session.receive_max, self.max_inflight)
        now = time.time()
        while session.queue and session.conn is not None and len(session.inflight) < window:
            out = session.queue.popleft()
            session.queued_bytes -= out.message.size
            if out.message.expired(now):
                if self._store is not None:
                    self._store.remove(out)
                continue
            self._transmit(session, out)
