"""MQTT 5 properties: the type users pass them as, and their encoding for Mongoose."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

from .._ffi import NULL, ffi
from .constants import (
    _INT_LIMITS,
    _PROP_TYPES,
    MQTT_PROP_TYPE_BINARY_DATA,
    MQTT_PROP_TYPE_STRING,
)

__all__ = ["MqttProperties"]

#: MQTT 5 properties to send: ``(MQTT_PROP_*, value)`` pairs. The value is an int for
#: numeric properties, str for strings, bytes for binary data and a ``(key, value)``
#: pair of str for ``MQTT_PROP_USER_PROPERTY`` (which may repeat).
MqttProperties = Sequence[tuple[int, Any]]


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

