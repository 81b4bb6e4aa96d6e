"""The view of a received MQTT packet handed to ``MG_EV_MQTT_MSG`` and ``MG_EV_MQTT_CMD``."""

from __future__ import annotations

from typing import Any, Optional, Union

from .._ffi import ffi, lib, mg_str_bytes
from ..messages import _MessageView
from .constants import (
    _PROP_TYPES,
    MQTT_CMD_PUBLISH,
    MQTT_PROP_TYPE_BINARY_DATA,
    MQTT_PROP_TYPE_STRING,
    MQTT_PROP_TYPE_STRING_PAIR,
)

__all__ = ["MqttMessage"]


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

