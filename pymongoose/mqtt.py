"""MQTT 3.1.1 and 5: constants, the message view, argument checks and packet sending.

Mongoose frames and parses MQTT packets; our C glue (csrc/mqtt.c) sits in front of it
and closes connections that send what no handler should see (oversized or malformed
packets, anything before CONNECT on a broker). This module holds the Python side:
:class:`MqttMessage`, the view handed to ``MG_EV_MQTT_MSG`` and ``MG_EV_MQTT_CMD``
handlers, and what ``Manager.mqtt_connect``/``mqtt_listen`` and the
``Connection.mqtt_*`` methods do behind their thin wrappers. The broker's routing
lives in :mod:`pymongoose.mqtt_broker`.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from ._ffi import NULL, ffi, lib, mg_str_bytes
from .messages import _MessageView

if TYPE_CHECKING:
    from .connection import Connection, EventHandler
    from .manager import Manager
    from .tls import TlsOpts

__all__ = [
    "MQTT_CMD_AUTH",
    "MQTT_CMD_CONNACK",
    "MQTT_CMD_CONNECT",
    "MQTT_CMD_DISCONNECT",
    "MQTT_CMD_PINGREQ",
    "MQTT_CMD_PINGRESP",
    "MQTT_CMD_PUBACK",
    "MQTT_CMD_PUBCOMP",
    "MQTT_CMD_PUBLISH",
    "MQTT_CMD_PUBREC",
    "MQTT_CMD_PUBREL",
    "MQTT_CMD_SUBACK",
    "MQTT_CMD_SUBSCRIBE",
    "MQTT_CMD_UNSUBACK",
    "MQTT_CMD_UNSUBSCRIBE",
    "MQTT_MAX_PACKET_SIZE",
    "MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER",
    "MQTT_PROP_AUTHENTICATION_DATA",
    "MQTT_PROP_AUTHENTICATION_METHOD",
    "MQTT_PROP_CONTENT_TYPE",
    "MQTT_PROP_CORRELATION_DATA",
    "MQTT_PROP_MAXIMUM_PACKET_SIZE",
    "MQTT_PROP_MAXIMUM_QOS",
    "MQTT_PROP_MESSAGE_EXPIRY_INTERVAL",
    "MQTT_PROP_PAYLOAD_FORMAT_INDICATOR",
    "MQTT_PROP_REASON_STRING",
    "MQTT_PROP_RECEIVE_MAXIMUM",
    "MQTT_PROP_REQUEST_PROBLEM_INFORMATION",
    "MQTT_PROP_REQUEST_RESPONSE_INFORMATION",
    "MQTT_PROP_RESPONSE_INFORMATION",
    "MQTT_PROP_RESPONSE_TOPIC",
    "MQTT_PROP_RETAIN_AVAILABLE",
    "MQTT_PROP_SERVER_KEEP_ALIVE",
    "MQTT_PROP_SERVER_REFERENCE",
    "MQTT_PROP_SESSION_EXPIRY_INTERVAL",
    "MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE",
    "MQTT_PROP_SUBSCRIPTION_IDENTIFIER",
    "MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE",
    "MQTT_PROP_TOPIC_ALIAS",
    "MQTT_PROP_TOPIC_ALIAS_MAXIMUM",
    "MQTT_PROP_TYPE_BINARY_DATA",
    "MQTT_PROP_TYPE_BYTE",
    "MQTT_PROP_TYPE_INT",
    "MQTT_PROP_TYPE_SHORT",
    "MQTT_PROP_TYPE_STRING",
    "MQTT_PROP_TYPE_STRING_PAIR",
    "MQTT_PROP_TYPE_VARIABLE_INT",
    "MQTT_PROP_USER_PROPERTY",
    "MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE",
    "MQTT_PROP_WILL_DELAY_INTERVAL",
    "MQTT_QOS_0",
    "MQTT_QOS_1",
    "MQTT_QOS_2",
    "MqttMessage",
    "MqttProperties",
    "check_topic_filter",
    "check_topic_name",
    "connack_reason",
]

# -- constants, read from the compiled library ---------------------------------------

MQTT_CMD_CONNECT: int = lib.MQTT_CMD_CONNECT
MQTT_CMD_CONNACK: int = lib.MQTT_CMD_CONNACK
MQTT_CMD_PUBLISH: int = lib.MQTT_CMD_PUBLISH
MQTT_CMD_PUBACK: int = lib.MQTT_CMD_PUBACK
MQTT_CMD_PUBREC: int = lib.MQTT_CMD_PUBREC
MQTT_CMD_PUBREL: int = lib.MQTT_CMD_PUBREL
MQTT_CMD_PUBCOMP: int = lib.MQTT_CMD_PUBCOMP
MQTT_CMD_SUBSCRIBE: int = lib.MQTT_CMD_SUBSCRIBE
MQTT_CMD_SUBACK: int = lib.MQTT_CMD_SUBACK
MQTT_CMD_UNSUBSCRIBE: int = lib.MQTT_CMD_UNSUBSCRIBE
MQTT_CMD_UNSUBACK: int = lib.MQTT_CMD_UNSUBACK
MQTT_CMD_PINGREQ: int = lib.MQTT_CMD_PINGREQ
MQTT_CMD_PINGRESP: int = lib.MQTT_CMD_PINGRESP
MQTT_CMD_DISCONNECT: int = lib.MQTT_CMD_DISCONNECT
MQTT_CMD_AUTH: int = lib.MQTT_CMD_AUTH

#: Quality of service levels: at most once, at least once, exactly once.
MQTT_QOS_0, MQTT_QOS_1, MQTT_QOS_2 = 0, 1, 2

MQTT_PROP_TYPE_BYTE: int = lib.MQTT_PROP_TYPE_BYTE
MQTT_PROP_TYPE_STRING: int = lib.MQTT_PROP_TYPE_STRING
MQTT_PROP_TYPE_STRING_PAIR: int = lib.MQTT_PROP_TYPE_STRING_PAIR
MQTT_PROP_TYPE_BINARY_DATA: int = lib.MQTT_PROP_TYPE_BINARY_DATA
MQTT_PROP_TYPE_VARIABLE_INT: int = lib.MQTT_PROP_TYPE_VARIABLE_INT
MQTT_PROP_TYPE_INT: int = lib.MQTT_PROP_TYPE_INT
MQTT_PROP_TYPE_SHORT: int = lib.MQTT_PROP_TYPE_SHORT

MQTT_PROP_PAYLOAD_FORMAT_INDICATOR: int = lib.MQTT_PROP_PAYLOAD_FORMAT_INDICATOR
MQTT_PROP_MESSAGE_EXPIRY_INTERVAL: int = lib.MQTT_PROP_MESSAGE_EXPIRY_INTERVAL
MQTT_PROP_CONTENT_TYPE: int = lib.MQTT_PROP_CONTENT_TYPE
MQTT_PROP_RESPONSE_TOPIC: int = lib.MQTT_PROP_RESPONSE_TOPIC
MQTT_PROP_CORRELATION_DATA: int = lib.MQTT_PROP_CORRELATION_DATA
MQTT_PROP_SUBSCRIPTION_IDENTIFIER: int = lib.MQTT_PROP_SUBSCRIPTION_IDENTIFIER
MQTT_PROP_SESSION_EXPIRY_INTERVAL: int = lib.MQTT_PROP_SESSION_EXPIRY_INTERVAL
MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER: int = lib.MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER
MQTT_PROP_SERVER_KEEP_ALIVE: int = lib.MQTT_PROP_SERVER_KEEP_ALIVE
MQTT_PROP_AUTHENTICATION_METHOD: int = lib.MQTT_PROP_AUTHENTICATION_METHOD
MQTT_PROP_AUTHENTICATION_DATA: int = lib.MQTT_PROP_AUTHENTICATION_DATA
MQTT_PROP_REQUEST_PROBLEM_INFORMATION: int = lib.MQTT_PROP_REQUEST_PROBLEM_INFORMATION
MQTT_PROP_WILL_DELAY_INTERVAL: int = lib.MQTT_PROP_WILL_DELAY_INTERVAL
MQTT_PROP_REQUEST_RESPONSE_INFORMATION: int = lib.MQTT_PROP_REQUEST_RESPONSE_INFORMATION
MQTT_PROP_RESPONSE_INFORMATION: int = lib.MQTT_PROP_RESPONSE_INFORMATION
MQTT_PROP_SERVER_REFERENCE: int = lib.MQTT_PROP_SERVER_REFERENCE
MQTT_PROP_REASON_STRING: int = lib.MQTT_PROP_REASON_STRING
MQTT_PROP_RECEIVE_MAXIMUM: int = lib.MQTT_PROP_RECEIVE_MAXIMUM
MQTT_PROP_TOPIC_ALIAS_MAXIMUM: int = lib.MQTT_PROP_TOPIC_ALIAS_MAXIMUM
MQTT_PROP_TOPIC_ALIAS: int = lib.MQTT_PROP_TOPIC_ALIAS
MQTT_PROP_MAXIMUM_QOS: int = lib.MQTT_PROP_MAXIMUM_QOS
MQTT_PROP_RETAIN_AVAILABLE: int = lib.MQTT_PROP_RETAIN_AVAILABLE
MQTT_PROP_USER_PROPERTY: int = lib.MQTT_PROP_USER_PROPERTY
MQTT_PROP_MAXIMUM_PACKET_SIZE: int = lib.MQTT_PROP_MAXIMUM_PACKET_SIZE
MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: int = lib.MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE
MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: int = (
    lib.MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE)
MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE: int = lib.MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE

#: Default for ``max_packet_size``: larger packets close the connection.
MQTT_MAX_PACKET_SIZE: int = lib.PYMG_MQTT_MAX_PACKET

#: MQTT 5 properties to send: ``(MQTT_PROP_*, value)`` pairs. The value is an int for
#: numeric properties, str for strings, bytes for binary data and a ``(key, value)``
#: pair of str for ``MQTT_PROP_USER_PROPERTY`` (which may repeat).
MqttProperties = Sequence[tuple[int, Any]]

# The wire type of every property (MQTT 5, section 2.2.2.2).
_PROP_TYPES: dict[int, int] = {
    MQTT_PROP_PAYLOAD_FORMAT_INDICATOR: MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_MESSAGE_EXPIRY_INTERVAL: MQTT_PROP_TYPE_INT,
    MQTT_PROP_CONTENT_TYPE: MQTT_PROP_TYPE_STRING,
    MQTT_PROP_RESPONSE_TOPIC: MQTT_PROP_TYPE_STRING,
    MQTT_PROP_CORRELATION_DATA: MQTT_PROP_TYPE_BINARY_DATA,
    MQTT_PROP_SUBSCRIPTION_IDENTIFIER: MQTT_PROP_TYPE_VARIABLE_INT,
    MQTT_PROP_SESSION_EXPIRY_INTERVAL: MQTT_PROP_TYPE_INT,
    MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER: MQTT_PROP_TYPE_STRING,
    MQTT_PROP_SERVER_KEEP_ALIVE: MQTT_PROP_TYPE_SHORT,
    MQTT_PROP_AUTHENTICATION_METHOD: MQTT_PROP_TYPE_STRING,
    MQTT_PROP_AUTHENTICATION_DATA: MQTT_PROP_TYPE_BINARY_DATA,
    MQTT_PROP_REQUEST_PROBLEM_INFORMATION: MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_WILL_DELAY_INTERVAL: MQTT_PROP_TYPE_INT,
    MQTT_PROP_REQUEST_RESPONSE_INFORMATION: MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_RESPONSE_INFORMATION: MQTT_PROP_TYPE_STRING,
    MQTT_PROP_SERVER_REFERENCE: MQTT_PROP_TYPE_STRING,
    MQTT_PROP_REASON_STRING: MQTT_PROP_TYPE_STRING,
    MQTT_PROP_RECEIVE_MAXIMUM: MQTT_PROP_TYPE_SHORT,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM: MQTT_PROP_TYPE_SHORT,
    MQTT_PROP_TOPIC_ALIAS: MQTT_PROP_TYPE_SHORT,
    MQTT_PROP_MAXIMUM_QOS: MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_RETAIN_AVAILABLE: MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_USER_PROPERTY: MQTT_PROP_TYPE_STRING_PAIR,
    MQTT_PROP_MAXIMUM_PACKET_SIZE: MQTT_PROP_TYPE_INT,
    MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE: MQTT_PROP_TYPE_BYTE,
}
_INT_LIMITS = {
    MQTT_PROP_TYPE_BYTE: 0xFF,
    MQTT_PROP_TYPE_SHORT: 0xFFFF,
    MQTT_PROP_TYPE_INT: 0xFFFFFFFF,
    MQTT_PROP_TYPE_VARIABLE_INT: 268_435_455,
}
_MAX_REMAINING = 268_435_455  # the largest length four varint bytes can say


def connack_reason(code: int, version: int = 4) -> str:
    """What a CONNACK return code (MQTT 3.1.1) or reason code (``version=5``) means."""
    if not isinstance(code, int) or not 0 <= code <= 255:
        raise ValueError(f"a CONNACK code is an int from 0 to 255, not {code!r}")
    return ffi.string(lib.pymg_mqtt_connack_reason(code, version)).decode()  # type: ignore[no-any-return]


# -- the message view -----------------------------------------------------------------


class MqttMessage(_MessageView):
    """A received MQTT packet (``MG_EV_MQTT_MSG``: a PUBLISH; ``MG_EV_MQTT_CMD``: any).

    Valid only during the handler call that received it, like every message view.
    """

    __slots__ = ()
    _CTYPE = ffi.typeof("struct mg_mqtt_message *")

    @property
    def topic(self) -> str:
        """The topic of a PUBLISH (``""`` for other packets)."""
        return mg_str_bytes(self._live().topic).decode("utf-8", "replace")

    @property
    def data(self) -> bytes:
        """The payload of a PUBLISH, as bytes."""
        return mg_str_bytes(self._live().data)

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return self.data.decode("utf-8", "replace")

    @property
    def id(self) -> int:
        """The packet id (PUBLISH with QoS > 0, PUBACK, SUBACK, ...), else 0."""
        return int(self._live().id)

    @property
    def cmd(self) -> int:
        """The packet type, one of ``MQTT_CMD_*``."""
        return int(self._live().cmd)

    @property
    def qos(self) -> int:
        """The QoS of a PUBLISH (0, 1 or 2)."""
        return int(self._live().qos)

    @property
    def ack(self) -> int:
        """The return code of a CONNACK (0: accepted)."""
        return int(self._live().ack)

    @property
    def retain(self) -> bool:
        """The retain flag of a PUBLISH."""
        mm = self._live()
        return mm.cmd == MQTT_CMD_PUBLISH and bool(ffi.cast("uint8_t *", mm.dgram.buf)[0] & 1)

    @property
    def dgram(self) -> bytes:
        """The whole packet as received, fixed header included."""
        return mg_str_bytes(self._live().dgram)

    def properties(self) -> list[dict[str, Any]]:
        """The MQTT 5 properties of a PUBLISH, in order, as dicts.

        Each has ``id`` (an ``MQTT_PROP_*``), ``iv`` (the value of a numeric
        property, else 0), ``key`` (the key of a user property, else None) and ``val``
        (str for string and user properties, bytes for binary data, else None).
        Empty for MQTT 3.1.1.
        """
        mm = self._live()
        found: list[dict[str, Any]] = []
        if mm.props_size == 0:
            return found
        prop = ffi.new("struct mg_mqtt_prop *")
        ofs = lib.mg_mqtt_next_prop(mm, prop, 0)
        while ofs:
            kind = _PROP_TYPES.get(int(prop.id))
            key: Optional[str] = None
            val: Union[str, bytes, None] = None
            if kind == MQTT_PROP_TYPE_STRING_PAIR:
                key = mg_str_bytes(prop.key).decode("utf-8", "replace")
            if kind in (MQTT_PROP_TYPE_STRING, MQTT_PROP_TYPE_STRING_PAIR):
                val = mg_str_bytes(prop.val).decode("utf-8", "replace")
            elif kind == MQTT_PROP_TYPE_BINARY_DATA:
                val = mg_str_bytes(prop.val)
            found.append({"id": int(prop.id), "iv": int(prop.iv), "key": key, "val": val})
            ofs = lib.mg_mqtt_next_prop(mm, prop, ofs)
        return found

    def __repr__(self) -> str:
        if self._raw is None:
            return "<MqttMessage (expired)>"
        return f"<MqttMessage cmd={self.cmd} topic={self.topic!r} len={len(self.data)}>"


# -- argument checks ------------------------------------------------------------------


def _check_qos(qos: object, what: str = "qos") -> int:
    if not isinstance(qos, int) or isinstance(qos, bool):
        raise TypeError(f"{what} must be an int (0, 1 or 2), not {type(qos).__name__}")
    if not 0 <= qos <= 2:
        raise ValueError(f"{what} must be 0, 1 or 2, not {qos}")
    return qos


def _utf8_field(value: object, what: str, *, allow_empty: bool = True) -> bytes:
    """A UTF-8 string field of a packet: str, at most 65535 bytes, no NUL."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    raw = value.encode("utf-8")  # lone surrogates raise UnicodeEncodeError (a ValueError)
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL")
    if len(raw) > 0xFFFF:
        raise ValueError(f"{what} is limited to 65535 UTF-8 bytes, not {len(raw)}")
    if not raw and not allow_empty:
        raise ValueError(f"{what} must not be empty")
    return raw


def _binary_field(value: object, what: str) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")
    raw = bytes(value)
    if len(raw) > 0xFFFF:
        raise ValueError(f"{what} is limited to 65535 bytes, not {len(raw)}")
    return raw


def check_topic_name(topic: object, what: str = "topic") -> bytes:
    """A topic to publish to, UTF-8 encoded: non-empty, no ``+`` or ``#`` wildcards."""
    raw = _utf8_field(topic, what, allow_empty=False)
    if b"+" in raw or b"#" in raw:
        raise ValueError(f"{what} {topic!r}: wildcards (+, #) are for subscriptions only")
    return raw


def check_topic_filter(topic: object, what: str = "topic") -> bytes:
    """A subscription filter, UTF-8 encoded: ``+`` fills one whole level, ``#`` the last."""
    raw = _utf8_field(topic, what, allow_empty=False)
    levels = raw.split(b"/")
    for index, level in enumerate(levels):
        if b"#" in level and (level != b"#" or index != len(levels) - 1):
            raise ValueError(f"{what} {topic!r}: '#' must be a whole level and the last one")
        if b"+" in level and level != b"+":
            raise ValueError(f"{what} {topic!r}: '+' must be a whole level")
    return raw


class _Keep:
    """Buffers a cdata struct points into: alive as long as this object is."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def str_field(self, target: Any, raw: bytes) -> None:
        """Point the ``struct mg_str`` ``target`` at a kept copy of ``raw``."""
        buf = ffi.new("char[]", raw)
        self.items.append(buf)
        target.buf = buf
        target.len = len(raw)


def _properties(props: Optional[MqttProperties], keep: _Keep, what: str) -> tuple[Any, int]:
    """``(struct mg_mqtt_prop array or NULL, count)`` for ``props``."""
    if props is None:
        return NULL, 0
    if isinstance(props, (str, bytes)) or not isinstance(props, Iterable):
        raise TypeError(f"{what} must be a sequence of (MQTT_PROP_*, value) pairs")
    items = list(props)
    if not items:
        return NULL, 0
    array = ffi.new("struct mg_mqtt_prop[]", len(items))
    keep.items.append(array)
    for slot, item in zip(array, items):
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"{what}: each property is a (MQTT_PROP_*, value) pair, not {item!r}")
        prop_id, value = item
        kind = _PROP_TYPES.get(prop_id) if isinstance(prop_id, int) else None
        if kind is None:
            raise ValueError(f"{what}: {prop_id!r} is not an MQTT 5 property id (MQTT_PROP_*)")
        slot.id = prop_id
        name = f"{what} {prop_id:#04x}"
        if kind in _INT_LIMITS:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} takes an int, not {type(value).__name__}")
            if not 0 <= value <= _INT_LIMITS[kind]:
                raise ValueError(f"{name} must be from 0 to {_INT_LIMITS[kind]}, not {value}")
            slot.iv = value
        elif kind == MQTT_PROP_TYPE_STRING:
            keep.str_field(slot.val, _utf8_field(value, name))
        elif kind == MQTT_PROP_TYPE_BINARY_DATA:
            keep.str_field(slot.val, _binary_field(value, name))
        else:  # a user property
            if not isinstance(value, tuple) or len(value) != 2:
                raise TypeError(f"{name} (user property) takes a (key, value) pair of str")
            keep.str_field(slot.key, _utf8_field(value[0], f"{name} key"))
            keep.str_field(slot.val, _utf8_field(value[1], f"{name} value"))
    return array, len(items)


def _new_opts(keep: _Keep) -> Any:
    opts = ffi.new("struct mg_mqtt_opts *")
    keep.items.append(opts)
    return opts


def _mqtt_conn(conn: Connection) -> Any:
    """The live C connection of ``conn`` when it speaks MQTT; None (after a warning)
    when it does not: cymongoose's helpers do nothing there and raise nothing."""
    c = conn._live()
    if not lib.pymg_mqtt_version(c):
        warnings.warn(f"{conn!r} is not an MQTT connection (open one with "
                      "Manager.mqtt_connect or accept it with Manager.mqtt_listen): "
                      "nothing was sent", RuntimeWarning, stacklevel=4)
        return None
    return c


def _check_size(value: object, what: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{what} must be from {low} to {high}, not {value}")
    return value


# -- Manager.mqtt_connect / mqtt_listen -------------------------------------------------


def _check_mqtt_url(url: object, what: str) -> bytes:
    from .manager import _check_url

    scheme, raw = _check_url(url, what)
    if scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"{what} URL {url!r} must start with mqtt:// or mqtts:// "
                         "(or tcp://)")
    return raw


def connect(manager: Manager, url: str, handler: Optional[EventHandler], client_id: str,
            username: str, password: str, clean_session: bool, keepalive: int, *,
            version: int, will_topic: str, will_message: Union[bytes, str], will_qos: int,
            will_retain: bool, properties: Optional[MqttProperties],
            will_properties: Optional[MqttProperties], max_packet_size: int,
            events: Optional[Iterable[int]], tls: Optional[TlsOpts]) -> Connection:
    """What ``Manager.mqtt_connect`` does (see there)."""
    import errno

    from .errors import ConnectError
    from .manager import _check_tls

    m = manager._live()
    raw_url = _check_mqtt_url(url, "mqtt_connect")
    tls_opts = _check_tls(tls, client=True)
    if version not in (4, 5) or isinstance(version, bool):
        raise ValueError(f"version must be 4 (MQTT 3.1.1) or 5, not {version!r}")
    keep = _Keep()
    opts = _new_opts(keep)
    keep.str_field(opts.client_id, _utf8_field(client_id, "client_id"))
    keep.str_field(opts.user, _utf8_field(username, "username"))
    # "pass" is a Python keyword: the field is only reachable with getattr.
    keep.str_field(getattr(opts, "pass"), _binary_field(password, "password"))
    if password and not username and version == 4:
        raise ValueError("MQTT 3.1.1 sends a password only with a username")
    opts.keepalive = _check_size(keepalive, "keepalive", 0, 0xFFFF)
    opts.clean = bool(clean_session)
    opts.version = version
    if will_topic:
        keep.str_field(opts.topic, check_topic_name(will_topic, "will_topic"))
        keep.str_field(opts.message, _binary_field(will_message, "will_message"))
        opts.qos = _check_qos(will_qos, "will_qos")
        opts.retain = bool(will_retain)
    elif will_message or will_qos or will_retain:
        raise ValueError("will_message, will_qos and will_retain need a will_topic")
    if version == 5:
        opts.props, opts.num_props = _properties(properties, keep, "properties")
        opts.will_props, opts.num_will_props = _properties(will_properties, keep,
                                                           "will_properties")
    elif properties or will_properties:
        raise ValueError("properties need version=5 (MQTT 5)")
    max_packet = _check_size(max_packet_size, "max_packet_size", 2, _MAX_REMAINING)
    route = manager._route_for(handler, events)
    c = manager._open(route, lambda: lib.pymg_mqtt_connect(m, raw_url, opts, route[1],
                                                           max_packet))
    if c == NULL:
        manager._settle()
        raise ConnectError(errno.ENOMEM, f"cannot connect to {url}: out of memory")
    # CONNECT is queued already; Mongoose holds it back until the handshake is done.
    return manager._client(c, route, raw_url, tls_opts)


def listen(manager: Manager, url: str, handler: Optional[EventHandler], *,
           events: Optional[Iterable[int]], max_packet_size: int,
           timeout_ms: int, tls: Optional[TlsOpts]) -> Connection:
    """What ``Manager.mqtt_listen`` does (see there)."""
    import errno
    import os

    from .errors import ListenError
    from .manager import _check_tls

    m = manager._live()
    raw_url = _check_mqtt_url(url, "mqtt_listen")
    tls_opts = _check_tls(tls, client=False)
    max_packet = _check_size(max_packet_size, "max_packet_size", 2, _MAX_REMAINING)
    timeout = _check_size(timeout_ms, "timeout_ms", 0, 0xFFFFFFFF)
    route = manager._route_for(handler, events)
    err = ffi.new("int *")
    c = manager._open(route, lambda: lib.pymg_mqtt_listen(m, raw_url, route[1], max_packet,
                                                          timeout, err))
    if c == NULL:
        manager._settle()
        code = err[0]
        if code:
            raise ListenError(code, f"cannot listen on {url}: {os.strerror(code)}")
        raise ListenError(errno.EINVAL, f"cannot listen on {url}: Mongoose refused the "
                          "address (the host must be an IP address, e.g. mqtt://127.0.0.1:1883)")
    listener = manager._wrapper(c, route)
    if tls_opts is not None:
        listener.tls_init(tls_opts)
    return listener


# -- Connection.mqtt_* ----------------------------------------------------------------


# Validated topics, UTF-8 encoded: a publisher (or a broker forwarding) uses the same few
# again and again. Bounded, so varying topics cannot grow it without limit.
_PUBLISH_TOPICS: dict[str, bytes] = {}
_PUBLISH_TOPICS_MAX = 1024
_mg_mqtt_pub = lib.mg_mqtt_pub
_mqtt_version = lib.pymg_mqtt_version


def publish(conn: Connection, topic: str, message: Union[bytes, str], qos: int, retain: bool,
            properties: Optional[MqttProperties]) -> int:
    """What ``Connection.mqtt_pub`` does (see there). It runs per message, so the
    common case (a known topic, no properties) takes no copies and few calls."""
    c = conn._c
    if c is None or not _mqtt_version(c):
        c = _mqtt_conn(conn)  # raises or warns as it should
        if c is None:
            return 0
    raw_topic = _PUBLISH_TOPICS.get(topic) if type(topic) is str else None
    if raw_topic is None:
        raw_topic = check_topic_name(topic)
        if len(_PUBLISH_TOPICS) >= _PUBLISH_TOPICS_MAX:
            _PUBLISH_TOPICS.clear()
        _PUBLISH_TOPICS[topic] = raw_topic
    if type(message) is str:
        message = message.encode("utf-8")
    elif not isinstance(message, (bytes, bytearray, memoryview)):
        raise TypeError(f"message must be bytes or str, not {type(message).__name__}")
    if type(qos) is not int or not 0 <= qos <= 2:
        _check_qos(qos)
    opts = ffi.new("struct mg_mqtt_opts *")
    # Borrowed, not copied: Mongoose copies both into the send buffer before returning.
    topic_buf = ffi.from_buffer(raw_topic)
    payload = ffi.from_buffer(message)
    opts.topic.buf = topic_buf
    opts.topic.len = len(raw_topic)
    opts.message.buf = payload
    opts.message.len = len(payload)
    opts.qos = qos
    opts.retain = bool(retain)
    keep = None
    props_bound = 4
    if properties:
        keep = _Keep()
        opts.props, opts.num_props = _v5_properties(c, properties, keep)
        props_bound += sum(9 + opts.props[i].key.len + opts.props[i].val.len
                           for i in range(opts.num_props))
    # Mongoose would write a wrong fixed header for a packet beyond what it can say.
    if 2 + len(raw_topic) + 2 + props_bound + len(payload) > _MAX_REMAINING:
        raise ValueError(f"message of {len(payload)} bytes is too large for one MQTT packet "
                         f"(at most {_MAX_REMAINING} bytes in all)")
    packet_id = int(_mg_mqtt_pub(c, opts))
    del keep, topic_buf, payload  # alive until here: C read them
    wake = conn._manager._on_work_queued
    if wake is not None:
        wake()
    return packet_id


def _v5_properties(c: Any, properties: Optional[MqttProperties], keep: _Keep) -> tuple[Any, int]:
    if properties and lib.pymg_mqtt_version(c) != 5:
        raise ValueError("properties need an MQTT 5 connection (mqtt_connect(..., version=5))")
    return _properties(properties, keep, "properties")


def subscribe(conn: Connection, topic: str, qos: int, unsubscribe: bool,
              properties: Optional[MqttProperties]) -> None:
    """What ``Connection.mqtt_sub`` and ``mqtt_unsub`` do (see there)."""
    c = _mqtt_conn(conn)
    if c is None:
        return
    keep = _Keep()
    opts = _new_opts(keep)
    keep.str_field(opts.topic, check_topic_filter(topic))
    opts.props, opts.num_props = _v5_properties(c, properties, keep)
    if unsubscribe:
        lib.mg_mqtt_unsub(c, opts)
    else:
        opts.qos = _check_qos(qos)
        lib.mg_mqtt_sub(c, opts)
    conn._work_queued()


def disconnect(conn: Connection, properties: Optional[MqttProperties]) -> None:
    """What ``Connection.mqtt_disconnect`` does (see there)."""
    c = _mqtt_conn(conn)
    if c is None:
        return
    keep = _Keep()
    opts = _new_opts(keep)  # Mongoose reads it even for MQTT 3.1.1: never NULL
    opts.props, opts.num_props = _v5_properties(c, properties, keep)
    lib.mg_mqtt_disconnect(c, opts)
    conn._work_queued()


def send_header(conn: Connection, cmd: int, flags: int, length: int) -> None:
    """What ``Connection.mqtt_send_header`` does (see there)."""
    c = _mqtt_conn(conn)
    if c is None:
        return
    _check_size(cmd, "cmd", 1, 15)
    _check_size(flags, "flags", 0, 15)
    _check_size(length, "length", 0, _MAX_REMAINING)
    lib.mg_mqtt_send_header(c, cmd, flags, length)
    conn._work_queued()


def _send_packet(conn: Connection, c: Any, cmd: int, flags: int, body: bytes) -> None:
    lib.mg_mqtt_send_header(c, cmd, flags, len(body))
    if body:
        lib.mg_send(c, body, len(body))
    conn._work_queued()


def connack(conn: Connection, return_code: int, session_present: bool) -> None:
    """What ``Connection.mqtt_connack`` does (see there)."""
    c = _mqtt_conn(conn)
    if c is None:
        return
    _check_size(return_code, "return_code", 0, 255)
    body = bytes([1 if session_present else 0, return_code])
    if lib.pymg_mqtt_version(c) == 5:
        body += b"\0"  # no properties
    _send_packet(conn, c, MQTT_CMD_CONNACK, 0, body)


def suback(conn: Connection, packet_id: int, codes: Sequence[int]) -> None:
    """What ``Connection.mqtt_suback`` does (see there)."""
    c = _mqtt_conn(conn)
    if c is None:
        return
    _check_size(packet_id, "packet_id", 1, 0xFFFF)
    if isinstance(codes, int) or not codes:
        raise ValueError("codes must be a non-empty sequence: one per subscribed filter")
    for code in codes:
        _check_size(code, "each SUBACK code", 0, 255)
    body = struct.pack("!H", packet_id)
    if lib.pymg_mqtt_version(c) == 5:
        body += b"\0"
    _send_packet(conn, c, MQTT_CMD_SUBACK, 0, body + bytes(codes))


def unsuback(conn: Connection, packet_id: int, count: int) -> None:
    """What ``Connection.mqtt_unsuback`` does (see there)."""
    c = _mqtt_conn(conn)
    if c is None:
        return
    _check_size(packet_id, "packet_id", 1, 0xFFFF)
    _check_size(count, "count", 1, 0xFFFF)
    body = struct.pack("!H", packet_id)
    if lib.pymg_mqtt_version(c) == 5:
        body += b"\0" + bytes(count)  # no properties; "success" for each filter
    _send_packet(conn, c, MQTT_CMD_UNSUBACK, 0, body)


def version(conn: Connection) -> int:
    """What ``Connection.mqtt_version`` says (see there)."""
    c = conn._c
    return 0 if c is None else int(lib.pymg_mqtt_version(c))
