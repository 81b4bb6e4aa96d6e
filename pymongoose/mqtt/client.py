"""What ``Manager.mqtt_connect``/``mqtt_listen`` and the ``Connection.mqtt_*`` methods do
behind their one-line wrappers: argument checks, then Mongoose's packet builders.

Mongoose frames and parses MQTT packets; our C glue (csrc/mqtt.c) sits in front of it
and closes connections that send what no handler should see (oversized or malformed
packets, anything before CONNECT on a broker).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from .._ffi import NULL, ffi, lib
from .constants import _MAX_REMAINING, MQTT_CMD_CONNACK, MQTT_CMD_SUBACK, MQTT_CMD_UNSUBACK
from .constants import MQTT_CMD_PINGREQ as MQTT_CMD_PINGREQ
from .constants import MQTT_CMD_PINGRESP as MQTT_CMD_PINGRESP
from .properties import MqttProperties as MqttProperties
from .properties import _binary_field, _Keep, _properties, _utf8_field
from .topics import _check_qos, check_topic_filter, check_topic_name

if TYPE_CHECKING:
    from ..connection import Connection, EventHandler
    from ..manager import Manager
    from ..tls import TlsOpts


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
    from ..manager import _check_url

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

    from ..errors import ConnectError
    from ..manager import _check_tls

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

    from ..errors import ListenError
    from ..manager import _check_tls

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


def broker_mode(conn: Connection, keepalive: int) -> None:
    """Let ``conn`` (broker side) pass MQTT 5 PUBLISH with an empty topic (a topic alias)
    to its handler; ``keepalive`` >= 0 replaces the client's keepalive (seconds)."""
    c = _mqtt_conn(conn)
    if c is not None:
        lib.pymg_mqtt_broker_mode(c, keepalive)


def send_many(conns: list[Connection], data: bytes) -> None:
    """Queue ``data`` on every connection in ``conns`` with one C call (a broker's
    fan-out of one packet). Connections already closed are skipped."""
    cs = [c for c in (conn._c for conn in conns) if c is not None]
    if cs:
        lib.pymg_send_many(ffi.new("struct mg_connection *[]", cs), len(cs), data, len(data))
        conns[0]._work_queued()
