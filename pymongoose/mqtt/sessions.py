"""What a broker keeps per client id: subscriptions, messages on their way, its will.

A session outlives its connection when the client asks (MQTT 3.1.1 clean session = 0,
MQTT 5 Session Expiry Interval > 0): the broker then queues QoS 1 and 2 messages for it
and, when it reconnects, resends what it had not acknowledged.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Optional

from . import wire
from .constants import MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, MQTT_PROP_SUBSCRIPTION_IDENTIFIER

if TYPE_CHECKING:
    from ..connection import Connection

__all__: list[str] = []

#: A session expiry interval meaning "never" (MQTT 5, 3.1.2.11.2).
NEVER = 0xFFFFFFFF


class Message:
    """One application message as published: shared by every copy sent on."""

    __slots__ = ("_parts", "expires_at", "payload", "props", "qos", "raw_topic", "retain",
                 "topic")

    def __init__(self, topic: str, payload: bytes, qos: int, retain: bool,
                 props: tuple[tuple[int, Any], ...] = (),
                 expires_at: Optional[float] = None) -> None:
        self.topic = topic
        self.raw_topic = topic.encode("utf-8")
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.props = props  # what is forwarded, less the expiry interval
        self.expires_at = expires_at  # wall clock (time.time()), None: never
        self._parts: dict[int, tuple[bytes, bytes]] = {}

    @property
    def size(self) -> int:
        """Bytes it takes in a queue (topic and payload)."""
        return len(self.raw_topic) + len(self.payload)

    def expired(self, now: float) -> bool:
        """Whether its Message Expiry Interval has passed."""
        return self.expires_at is not None and now >= self.expires_at

    def parts(self, version: int, sub_ids: tuple[int, ...] = ()) -> tuple[bytes, bytes]:
        """The PUBLISH pieces for an MQTT ``version`` subscriber (see wire.publish)."""
        if version != 5:
            cached = self._parts.get(4)
            if cached is None:
                cached = self._parts[4] = wire.publish_parts(self.raw_topic, self.payload, b"")
            return cached
        if self.expires_at is None and not sub_ids:
            cached = self._parts.get(5)
            if cached is None:
                cached = self._parts[5] = wire.publish_parts(
                    self.raw_topic, self.payload, wire.encode_properties(self.props))
            return cached
        props = list(self.props)
        if self.expires_at is not None:
            remaining = max(0, int(self.expires_at - time.time() + 0.999))
            props.append((MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, remaining))
        props.extend((MQTT_PROP_SUBSCRIPTION_IDENTIFIER, sub_id) for sub_id in sub_ids)
        return wire.publish_parts(self.raw_topic, self.payload, wire.encode_properties(props))


class Subscription:
    """One topic filter of a session, with its MQTT 5 options."""

    __slots__ = ("group", "identifier", "no_local", "qos", "retain_as_published",
                 "retain_handling", "topic_filter")

    def __init__(self, topic_filter: str, options: int, identifier: int = 0,
                 group: Optional[str] = None) -> None:
        self.topic_filter = topic_filter  # without a $share/group/ prefix
        self.qos = options & 3
        self.no_local = bool(options & 4)
        self.retain_as_published = bool(options & 8)
        self.retain_handling = (options >> 4) & 3
        self.identifier = identifier
        self.group = group

    @property
    def options(self) -> int:
        """The SUBSCRIBE options byte it was made from."""
        return (self.qos | (4 if self.no_local else 0) | (8 if self.retain_as_published else 0)
                | self.retain_handling << 4)


class Outgoing:
    """A message on its way to one session: queued, or sent and awaiting its ack."""

    __slots__ = ("message", "packet_id", "qos", "released", "retain", "row", "sub_ids")

    def __init__(self, message: Message, qos: int, retain: bool,
                 sub_ids: tuple[int, ...] = ()) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.sub_ids = sub_ids
        self.packet_id = 0  # 0 while queued
        self.released = False  # QoS 2: PUBREC received, PUBREL sent
        self.row = 0  # its row in the persistent store, 0 when not stored


class Session:
    """The state a broker keeps for one client id."""

    __slots__ = ("aliases", "awaiting_rel", "client_id", "conn", "expires_at", "expiry",
                 "inflight", "max_packet", "next_id", "queue", "queued_bytes", "receive_max",
                 "subscriptions", "version", "will", "will_at", "will_delay")

    def __init__(self, client_id: str, version: int, expiry: int) -> None:
        self.client_id = client_id
        self.conn: Optional[Connection] = None
        self.version = version
        self.expiry = expiry  # seconds it lives on after a disconnect; NEVER: forever
        self.subscriptions: dict[str, Subscription] = {}  # by the filter as subscribed
        self.inflight: OrderedDict[int, Outgoing] = OrderedDict()  # by packet id, sent order
        self.queue: deque[Outgoing] = deque()
        self.queued_bytes = 0
        self.next_id = 1
        self.awaiting_rel: set[int] = set()  # QoS 2 ids received, PUBREL not yet
        self.receive_max = 65535
        self.max_packet = 0  # the client's Maximum Packet Size, 0: no limit
        self.aliases: dict[int, str] = {}  # client-to-server topic aliases
        self.will: Optional[Message] = None
        self.will_delay = 0
        self.will_at: Optional[float] = None  # when a delayed will is due (monotonic)
        self.expires_at: Optional[float] = None  # when it ends, offline (monotonic)

    def new_packet_id(self) -> int:
        """A packet id no message in flight uses."""
        while True:
            packet_id = self.next_id
            self.next_id = packet_id % 65535 + 1
            if packet_id not in self.inflight:
                return packet_id
