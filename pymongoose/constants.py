"""Mongoose's constants, read from the compiled library (never hard-coded)."""

from __future__ import annotations

from ._ffi import lib

__all__ = [
    "EVENT_NAMES",
    "MG_EV_ACCEPT",
    "MG_EV_CLOSE",
    "MG_EV_CONNECT",
    "MG_EV_ERROR",
    "MG_EV_HTTP_HDRS",
    "MG_EV_HTTP_MSG",
    "MG_EV_MDNS_REQ",
    "MG_EV_MDNS_RESP",
    "MG_EV_MODBUS_REQ",
    "MG_EV_MQTT_CMD",
    "MG_EV_MQTT_MSG",
    "MG_EV_MQTT_OPEN",
    "MG_EV_OPEN",
    "MG_EV_POLL",
    "MG_EV_READ",
    "MG_EV_RESOLVE",
    "MG_EV_SNTP_TIME",
    "MG_EV_TLS_HS",
    "MG_EV_USER",
    "MG_EV_WAKEUP",
    "MG_EV_WRITE",
    "MG_EV_WS_CTL",
    "MG_EV_WS_MSG",
    "MG_EV_WS_OPEN",
    "MG_LL_DEBUG",
    "MG_LL_ERROR",
    "MG_LL_INFO",
    "MG_LL_NONE",
    "MG_LL_VERBOSE",
    "PYMG_EV_HTTP_BODY",
    "PYMG_EV_HTTP_BODY_END",
    "WEBSOCKET_OP_BINARY",
    "WEBSOCKET_OP_CLOSE",
    "WEBSOCKET_OP_CONTINUE",
    "WEBSOCKET_OP_PING",
    "WEBSOCKET_OP_PONG",
    "WEBSOCKET_OP_TEXT",
    "event_name",
]

MG_EV_ERROR: int = lib.MG_EV_ERROR
MG_EV_OPEN: int = lib.MG_EV_OPEN
MG_EV_POLL: int = lib.MG_EV_POLL
MG_EV_RESOLVE: int = lib.MG_EV_RESOLVE
MG_EV_CONNECT: int = lib.MG_EV_CONNECT
MG_EV_ACCEPT: int = lib.MG_EV_ACCEPT
MG_EV_TLS_HS: int = lib.MG_EV_TLS_HS
MG_EV_READ: int = lib.MG_EV_READ
MG_EV_WRITE: int = lib.MG_EV_WRITE
MG_EV_CLOSE: int = lib.MG_EV_CLOSE
MG_EV_HTTP_HDRS: int = lib.MG_EV_HTTP_HDRS
MG_EV_HTTP_MSG: int = lib.MG_EV_HTTP_MSG
MG_EV_WS_OPEN: int = lib.MG_EV_WS_OPEN
MG_EV_WS_MSG: int = lib.MG_EV_WS_MSG
MG_EV_WS_CTL: int = lib.MG_EV_WS_CTL
MG_EV_MQTT_CMD: int = lib.MG_EV_MQTT_CMD
MG_EV_MQTT_MSG: int = lib.MG_EV_MQTT_MSG
MG_EV_MQTT_OPEN: int = lib.MG_EV_MQTT_OPEN
MG_EV_SNTP_TIME: int = lib.MG_EV_SNTP_TIME
MG_EV_WAKEUP: int = lib.MG_EV_WAKEUP
MG_EV_MDNS_REQ: int = lib.MG_EV_MDNS_REQ
MG_EV_MDNS_RESP: int = lib.MG_EV_MDNS_RESP
MG_EV_MODBUS_REQ: int = lib.MG_EV_MODBUS_REQ
MG_EV_USER: int = lib.MG_EV_USER

WEBSOCKET_OP_CONTINUE: int = lib.WEBSOCKET_OP_CONTINUE
WEBSOCKET_OP_TEXT: int = lib.WEBSOCKET_OP_TEXT
WEBSOCKET_OP_BINARY: int = lib.WEBSOCKET_OP_BINARY
WEBSOCKET_OP_CLOSE: int = lib.WEBSOCKET_OP_CLOSE
WEBSOCKET_OP_PING: int = lib.WEBSOCKET_OP_PING
WEBSOCKET_OP_PONG: int = lib.WEBSOCKET_OP_PONG

MG_LL_NONE: int = lib.MG_LL_NONE
MG_LL_ERROR: int = lib.MG_LL_ERROR
MG_LL_INFO: int = lib.MG_LL_INFO
MG_LL_DEBUG: int = lib.MG_LL_DEBUG
MG_LL_VERBOSE: int = lib.MG_LL_VERBOSE

#: Event code to name, for every MG_EV_* constant above MG_EV_USER excluded.
EVENT_NAMES: dict[int, str] = {
    value: name
    for name, value in sorted(globals().items())
    if name.startswith("MG_EV_") and name != "MG_EV_USER" and isinstance(value, int)
}

#: pymongoose's own events (not Mongoose's): a piece of a streamed request body
#: (``data``: bytes) and its end (``data``: None). See Connection.stream_body().
PYMG_EV_HTTP_BODY: int = lib.PYMG_EV_HTTP_BODY
PYMG_EV_HTTP_BODY_END: int = lib.PYMG_EV_HTTP_BODY_END
EVENT_NAMES[PYMG_EV_HTTP_BODY] = "PYMG_EV_HTTP_BODY"
EVENT_NAMES[PYMG_EV_HTTP_BODY_END] = "PYMG_EV_HTTP_BODY_END"


def event_name(ev: int) -> str:
    """A readable name for an event code: ``"MG_EV_HTTP_MSG"``, ``"MG_EV_USER+2"``.

    Unknown codes below MG_EV_USER give ``"MG_EV_UNKNOWN(n)"``.
    """
    if not isinstance(ev, int):
        raise TypeError(f"event code must be an int, not {type(ev).__name__}")
    name = EVENT_NAMES.get(ev)
    if name is not None:
        return name
    if ev == MG_EV_USER:
        return "MG_EV_USER"
    if ev > MG_EV_USER:
        return f"MG_EV_USER+{ev - MG_EV_USER}"
    return f"MG_EV_UNKNOWN({ev})"
