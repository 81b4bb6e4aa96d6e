"""Views over the messages Mongoose passes to event handlers.

Mongoose reuses a message's memory as soon as the handler returns, so a view is
valid only during the call that received it. Afterwards every access raises
:class:`~pymongoose.errors.MessageExpiredError`; nothing reads freed memory. Copy
what you need (``msg.body_bytes``, ``msg.headers()``) before returning.

Bytes cross the boundary; strings are decoded only when a property asks for one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

from ._ffi import NULL, ffi, lib, mg_str_bytes
from .errors import MessageExpiredError

__all__ = ["HttpMessage", "WsMessage"]

# URIs and query strings may carry any byte; surrogateescape keeps them round-trippable.
_URI_ERRORS = "surrogateescape"


class _MessageView:
    """Common life cycle of a view: a C pointer until the handler returns.

    The pointer arrives untyped (``void *``) and is cast on first use, so a handler
    that never looks at its message pays nothing for it. The Manager may reuse one
    view object for many events when nobody kept a reference to it.
    """

    __slots__ = ("_raw", "_typed")

    #: The cdata pointer type the view reads through.
    _CTYPE: ClassVar[Any]

    def __init__(self, ptr: Any = None) -> None:
        self._raw = ptr
        self._typed: Any = None

    def _live(self) -> Any:
        typed = self._typed
        if typed is None:
            raw = self._raw
            if raw is None:
                raise MessageExpiredError(
                    f"{type(self).__name__} is only valid inside the event handler that "
                    "received it; copy what you need (e.g. body_bytes, headers()) before "
                    "returning"
                )
            typed = self._typed = ffi.cast(self._CTYPE, raw)
        return typed

    @property
    def is_valid(self) -> bool:
        """True while the handler that received this message is still running."""
        return self._raw is not None

    def __bool__(self) -> bool:
        return self._raw is not None


class HttpMessage(_MessageView):
    """An HTTP request or response (``MG_EV_HTTP_MSG``, ``MG_EV_HTTP_HDRS``, ``MG_EV_WS_OPEN``)."""

    __slots__ = ()
    _CTYPE = ffi.typeof("struct mg_http_message *")

    @property
    def method(self) -> str:
        """Request method (``"GET"``); for a response, its protocol (``"HTTP/1.1"``)."""
        return mg_str_bytes(self._live().method).decode("latin-1")

    @property
    def uri(self) -> str:
        """Request path without the query string; for a response, the status digits."""
        return mg_str_bytes(self._live().uri).decode("utf-8", _URI_ERRORS)

    @property
    def query(self) -> str:
        """Query string without the ``?`` (``""`` when there is none)."""
        return mg_str_bytes(self._live().query).decode("utf-8", _URI_ERRORS)

    @property
    def proto(self) -> str:
        """Protocol of a request (``"HTTP/1.1"``); for a response, its reason phrase."""
        return mg_str_bytes(self._live().proto).decode("latin-1")

    @property
    def body_bytes(self) -> bytes:
        """The body, as bytes."""
        return mg_str_bytes(self._live().body)

    @property
    def body_text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return mg_str_bytes(self._live().body).decode("utf-8", "replace")

    @property
    def head_bytes(self) -> bytes:
        """The raw request or status line plus headers, as received."""
        return mg_str_bytes(self._live().head)

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of header ``name`` (case-insensitive), or ``default``."""
        hm = self._live()
        if not isinstance(name, str):
            raise TypeError(f"header name must be str, not {type(name).__name__}")
        value = lib.mg_http_get_header(hm, name.encode("latin-1"))
        if value == NULL:
            return default
        return mg_str_bytes(value).decode("latin-1")

    def headers(self) -> list[tuple[str, str]]:
        """All headers as ``(name, value)`` pairs, in the order received."""
        hm = self._live()
        pairs = []
        for entry in hm.headers:
            if entry.name.len == 0:
                break
            pairs.append(
                (mg_str_bytes(entry.name).decode("latin-1"),
                 mg_str_bytes(entry.value).decode("latin-1"))
            )
        return pairs

    def query_var(self, name: str) -> Optional[str]:
        """The URL-decoded value of query parameter ``name``; None when absent."""
        return self._form_var(self._live().query, name)

    def body_var(self, name: str) -> Optional[str]:
        """The URL-decoded value of ``name`` in a form-encoded body; None when absent."""
        return self._form_var(self._live().body, name)

    @staticmethod
    def _form_var(source: Any, name: str) -> Optional[str]:
        if not isinstance(name, str):
            raise TypeError(f"variable name must be str, not {type(name).__name__}")
        # A decoded value is never longer than the encoded source.
        size = source.len + 1
        buf = ffi.new("char[]", size)
        length = lib.mg_http_get_var(ffi.addressof(source), name.encode("utf-8"), buf, size)
        if length < 0:
            return None
        return ffi.unpack(buf, length).decode("utf-8", _URI_ERRORS)  # type: ignore[no-any-return]

    def status(self) -> int:
        """The status code of a response (``200``); 0 for a request (as cymongoose)."""
        hm = self._live()
        if not mg_str_bytes(hm.method).startswith(b"HTTP/"):
            return 0
        return int(lib.pymg_http_status(hm))

    def header_var(self, header_name: str, var_name: str) -> Optional[str]:
        """A ``var=value`` item inside a header: ``header_var("Content-Type", "charset")``."""
        value = self.header(header_name)
        if value is None:
            return None
        if not isinstance(var_name, str):
            raise TypeError(f"variable name must be str, not {type(var_name).__name__}")
        raw_value = ffi.new("char[]", value.encode("latin-1"))
        raw_name = ffi.new("char[]", var_name.encode("latin-1"))
        found = lib.mg_http_get_header_var(
            ffi.new("struct mg_str *", [raw_value, len(raw_value) - 1])[0],
            ffi.new("struct mg_str *", [raw_name, len(raw_name) - 1])[0],
        )
        if found.buf == NULL:
            return None
        return mg_str_bytes(found).decode("latin-1")

    def __repr__(self) -> str:
        if self._raw is None:
            return "<HttpMessage (expired)>"
        return f"<HttpMessage {self.method} {self.uri}>"


class WsMessage(_MessageView):
    """A WebSocket message (``MG_EV_WS_MSG``) or control frame (``MG_EV_WS_CTL``).

    Small messages reach Python in batches, already copied out of C (and inflated
    ones after permessage-deflate): then the view is a subclass that holds the payload
    itself, and still expires when its handler returns.
    """

    __slots__ = ()
    _CTYPE = ffi.typeof("struct mg_ws_message *")

    @property
    def data(self) -> bytes:
        """The payload, as bytes."""
        return mg_str_bytes(self._live().data)

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return self.data.decode("utf-8", "replace")

    @property
    def flags(self) -> int:
        """The frame's first header byte: FIN bit (0x80) and opcode (low four bits)."""
        return int(self._live().flags)

    @property
    def op(self) -> int:
        """The opcode: ``WEBSOCKET_OP_TEXT``, ``WEBSOCKET_OP_BINARY``, ``WEBSOCKET_OP_PING``..."""
        return self.flags & 0x0F

    def __repr__(self) -> str:
        if self._raw is None:
            return "<WsMessage (expired)>"
        return f"<WsMessage op={self.op} len={len(self.data)}>"


#: Stands in for the C pointer of a queued message: its payload was copied out of C.
QUEUED = object()


class QueuedWsMessage(WsMessage):
    """A WsMessage that holds its payload as bytes: delivered from a batch
    (Manager._drain), or inflated (permessage-deflate).

    ``data`` and ``flags`` are plain slots here, read without a property call: the
    per-message path. Expiring the view empties them and turns it into an
    _ExpiredWsMessage, whose ``data`` and ``flags`` raise MessageExpiredError. (No
    ``__getattr__`` here: it would keep CPython from specialising the slot reads.)
    """

    __slots__ = ("data", "flags")
    data: bytes
    flags: int

    def __init__(self) -> None:  # no super() chain: on PyPy this runs once per message
        self._raw = QUEUED
        self._typed = None
        self.data = b""  # filled before each use; set so that _expire never meets a gap
        self.flags = 0

    def _expire(self) -> None:
        """The handler returned: from now on every read raises MessageExpiredError."""
        self._raw = None
        try:  # noqa: SIM105 - a with statement costs more here, once per message on PyPy
            del self.data, self.flags
        except AttributeError:  # already expired: its class's properties refuse
            pass
        self.__class__ = _ExpiredWsMessage

    def _renew(self) -> None:
        """Make an expired view usable again for the next batch (its slots are filled
        before each use)."""
        self.__class__ = QueuedWsMessage
        self._raw = QUEUED
        self.data = b""
        self.flags = 0


def _expired_read(self: QueuedWsMessage) -> Any:
    raise MessageExpiredError(
        "WsMessage is only valid inside the event handler that received it; copy "
        "what you need (e.g. data) before returning")


class _ExpiredWsMessage(QueuedWsMessage):
    """A QueuedWsMessage whose handler has returned: reading its payload raises."""

    __slots__ = ()
    data = property(_expired_read)
    flags = property(_expired_read)
