"""MQTT packets a broker sends, built in Python: PUBLISH (with per-subscriber packet ids,
DUP and properties), acknowledgements, CONNACK, SUBACK, UNSUBACK and DISCONNECT with
MQTT 5 reason codes and properties; and reading MQTT 5 properties from received bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from .constants import (
    _PROP_TYPES,
    MQTT_PROP_TYPE_BINARY_DATA,
    MQTT_PROP_TYPE_BYTE,
    MQTT_PROP_TYPE_INT,
    MQTT_PROP_TYPE_SHORT,
    MQTT_PROP_TYPE_STRING,
    MQTT_PROP_TYPE_STRING_PAIR,
    MQTT_PROP_TYPE_VARIABLE_INT,
)

_pack_h = struct.Struct("!H").pack
_pack_i = struct.Struct("!I").pack


def varint(value: int) -> bytes:
    """``value`` as an MQTT variable byte integer."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_properties(props: Any) -> bytes:
    """``(MQTT_PROP_*, value)`` pairs as a property block, its length first."""
    out = bytearray()
    for prop_id, value in props:
        kind = _PROP_TYPES[prop_id]
        out += varint(prop_id)
        if kind == MQTT_PROP_TYPE_BYTE:
            out.append(value)
        elif kind == MQTT_PROP_TYPE_SHORT:
            out += _pack_h(value)
        elif kind == MQTT_PROP_TYPE_INT:
            out += _pack_i(value)
        elif kind == MQTT_PROP_TYPE_VARIABLE_INT:
            out += varint(value)
        elif kind == MQTT_PROP_TYPE_STRING:
            raw = value.encode("utf-8")
            out += _pack_h(len(raw)) + raw
        elif kind == MQTT_PROP_TYPE_BINARY_DATA:
            out += _pack_h(len(value)) + value
        else:  # a user property: a (key, value) pair of str
            key, val = value[0].encode("utf-8"), value[1].encode("utf-8")
            out += _pack_h(len(key)) + key + _pack_h(len(val)) + val
    return varint(len(out)) + bytes(out)


def decode_properties(data: bytes, pos: int) -> tuple[list[tuple[int, Any]], int]:
    """The property block at ``data[pos:]``: ``([(id, value), ...], position after it)``.

    ValueError when it is malformed or names an unknown property."""
    length, pos = read_varint(data, pos)
    end = pos + length
    if end > len(data):
        raise ValueError("MQTT properties run past the packet")
    props: list[tuple[int, Any]] = []
    while pos < end:
        prop_id, pos = read_varint(data, pos)
        kind = _PROP_TYPES.get(prop_id)
        value: Any
        if kind is None:
            raise ValueError(f"unknown MQTT 5 property {prop_id:#x}")
        if kind == MQTT_PROP_TYPE_BYTE:
            value, pos = data[pos], pos + 1
        elif kind == MQTT_PROP_TYPE_SHORT:
            value, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
        elif kind == MQTT_PROP_TYPE_INT:
            value, pos = int.from_bytes(data[pos:pos + 4], "big"), pos + 4
        elif kind == MQTT_PROP_TYPE_VARIABLE_INT:
            value, pos = read_varint(data, pos)
        elif kind == MQTT_PROP_TYPE_STRING_PAIR:
            key, pos = _read_binary(data, pos)
            val, pos = _read_binary(data, pos)
            value = (_text(key), _text(val))
        else:
            raw, pos = _read_binary(data, pos)
            value = _text(raw) if kind == MQTT_PROP_TYPE_STRING else raw
        props.append((prop_id, value))
    if pos != end:
        raise ValueError("MQTT property runs past its block")
    return props, end


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("MQTT string is not valid UTF-8") from None


def _read_binary(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise ValueError("truncated MQTT packet")
    n = int.from_bytes(data[pos:pos + 2], "big")
    if pos + 2 + n > len(data):
        raise ValueError("truncated MQTT packet")
    return data[pos + 2:pos + 2 + n], pos + 2 + n


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The variable byte integer at ``data[pos:]``: ``(value, position after it)``."""
    value, shift = 0, 0
    for _ in range(4):
        if pos >= len(data):
            raise ValueError("truncated MQTT packet")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    raise ValueError("malformed MQTT variable byte integer")


def packet(first: int, body: bytes) -> bytes:
    """A whole packet: the fixed header's first byte, the remaining length, ``body``."""
    n = len(body)
    if n < 128:
        return bytes((first, n)) + body
    return bytes((first,)) + varint(n) + body


def publish_parts(topic: bytes, payload: bytes, props: bytes) -> tuple[bytes, bytes]:
    """What every copy of one PUBLISH shares: ``(topic field, properties + payload)``.

    ``props`` is an encoded property block for MQTT 5, ``b""`` for 3.1.1."""
    return _pack_h(len(topic)) + topic, props + payload


def publish(qos: int, retain: bool, dup: bool, packet_id: int, topic_field: bytes,
            rest: bytes) -> bytes:
    """One PUBLISH from :func:`publish_parts`'s pieces."""
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    if qos:
        return packet(first, topic_field + _pack_h(packet_id) + rest)
    return packet(first, topic_field + rest)


def ack(cmd: int, packet_id: int, reason: int = 0, version: int = 4) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP; MQTT 5 adds a reason code other than 0."""
    first = (cmd << 4) | (2 if cmd == 6 else 0)
    if version == 5 and reason:
        return bytes((first, 3)) + _pack_h(packet_id) + bytes((reason,))
    return bytes((first, 2)) + _pack_h(packet_id)


def connack(session_present: bool, code: int, version: int, props: Any = ()) -> bytes:
    """CONNACK; MQTT 5 carries ``props``."""
    body = bytes((1 if session_present else 0, code))
    if version == 5:
        body += encode_properties(props)
    return packet(0x20, body)


def suback(packet_id: int, codes: list[int], version: int, props: Any = ()) -> bytes:
    """SUBACK with one code per filter."""
    body = _pack_h(packet_id)
    if version == 5:
        body += encode_properties(props)
    return packet(0x90, body + bytes(codes))


def unsuback(packet_id: int, codes: list[int], version: int) -> bytes:
    """UNSUBACK; MQTT 5 has a reason code per filter."""
    body = _pack_h(packet_id)
    if version == 5:
        body += b"\0" + bytes(codes)
    return packet(0xB0, body)


def disconnect(reason: int, props: Any = ()) -> bytes:
    """An MQTT 5 DISCONNECT from the server, with a reason code."""
    return packet(0xE0, bytes((reason,)) + encode_properties(props))
