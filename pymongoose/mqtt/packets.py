"""Parsing what clients send a broker: CONNECT, SUBSCRIBE and UNSUBSCRIBE."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Optional

from .constants import MQTT_CMD_CONNECT, MQTT_CMD_SUBSCRIBE, MQTT_CMD_UNSUBSCRIBE
from .topics import _check_qos, check_topic_filter, check_topic_name
from .wire import decode_properties

__all__ = ["MqttConnect", "parse_connect", "parse_subscribe", "parse_unsubscribe"]


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

    def properties(self) -> list[tuple[int, Any]]:
        props, self.pos = decode_properties(self.data, self.pos)
        return props

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
    #: MQTT 5: the CONNECT's and the will's properties, ``(MQTT_PROP_*, value)`` pairs.
    properties: list[tuple[int, Any]] = field(default_factory=list)
    will_properties: list[tuple[int, Any]] = field(default_factory=list)


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
    props = r.properties() if level == 5 else []
    info = MqttConnect(level, r.text(), bool(flags & 0x02), keepalive, properties=props)
    if flags & 0x04:
        if level == 5:
            info.will_properties = r.properties()
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
    packet_id, filters, _props = parse_subscribe_options(packet, version)
    return packet_id, [(topic, options & 3) for topic, options in filters]


def parse_subscribe_options(packet: bytes, version: int = 4) -> tuple[
        int, list[tuple[str, int]], list[tuple[int, Any]]]:
    """Parse a SUBSCRIBE with everything MQTT 5 adds: ``(packet_id, [(filter, options
    byte), ...], properties)``. The options byte holds the QoS (bits 0-1), No Local (2),
    Retain As Published (3) and Retain Handling (4-5). ValueError if malformed."""
    r = _Reader(packet)
    if packet[0] >> 4 != MQTT_CMD_SUBSCRIBE:
        raise ValueError("not a SUBSCRIBE packet")
    packet_id = r.u16()
    props = r.properties() if version == 5 else []
    filters = []
    while not r.done:
        topic = r.text()
        check_topic_filter(topic, "SUBSCRIBE filter")
        options = r.u8()
        if options & (0xC0 if version == 5 else 0xFC) or (options >> 4) & 3 == 3:
            raise ValueError("SUBSCRIBE: reserved option bits set")
        _check_qos(options & 3, "SUBSCRIBE QoS")
        filters.append((topic, options))
    if not filters:
        raise ValueError("SUBSCRIBE without a topic filter")
    return packet_id, filters, props


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
