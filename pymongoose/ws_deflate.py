"""permessage-deflate (RFC 7692): negotiation, and compressed WebSocket messages.

Public: :class:`PerMessageDeflate`, the options ``Connection.ws_upgrade``,
``Manager.ws_connect`` and ``ASGIServer`` take as ``compression=``; and
:class:`DeflateConnection`, what a connection that agreed on the extension is.
The rest is internal.

A connection that agreed on the extension becomes a :class:`DeflateConnection` (its
``ws_send`` compresses text and binary messages) and its handler is wrapped in a
:class:`_DeflateHandler` (compressed messages reach the application inflated). A
connection that did not agree keeps the plain classes: it pays nothing per message.

The C frame checks (csrc/conn_limits.c) let RSV1 through on the first frame of a data
message only once :func:`enable` told them so; the inflated size is held to the
WebSocket message limit here, the UTF-8 of inflated text checked here too.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional, Union, cast

from ._ffi import lib
from .connection import Connection, EventHandler
from .constants import (
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_TEXT,
)
from .errors import ConnectionClosedError
from .limits import Limits
from .messages import HttpMessage, QueuedWsMessage

__all__ = ["DeflateConnection", "PerMessageDeflate"]

EXTENSION = "permessage-deflate"
_RSV1 = 0x40
# Appended to a message's payload before inflating, stripped after deflating
# (RFC 7692 7.2.1, 7.2.2): the end of the empty stored block a sync flush makes.
_TAIL = b"\x00\x00\xff\xff"
_NO_LIMIT = (1 << 64) - 1  # pymg_ws_deflate_on: the connection has no limits in C
_WS_MSG_BIT = 1 << MG_EV_WS_MSG
_WS_OPEN_BIT = 1 << MG_EV_WS_OPEN
_mg_ws_send = lib.mg_ws_send


@dataclass(frozen=True)
class PerMessageDeflate:
    """How a WebSocket endpoint uses permessage-deflate (RFC 7692).

    On a server (``Connection.ws_upgrade``, ``ASGIServer``) these are what it asks
    for on top of the client's offer; on a client (``Manager.ws_connect``) they make
    the offer. Window sizes are in bits (9 to 15: zlib cannot deflate with the 8-bit
    window RFC 7692 also allows, so an offer that demands it is declined).

    ``server_no_context_takeover`` / ``client_no_context_takeover``: that side
    compresses every message on its own (less memory kept between messages, worse
    compression). ``server_max_window_bits`` / ``client_max_window_bits``: the
    largest LZ77 window that side may use. ``level`` and ``mem_level``: our own
    compressor's zlib settings (speed against ratio; mem_level 1-9 trades memory).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: Optional[int] = None
    client_max_window_bits: Optional[int] = None
    level: int = zlib.Z_DEFAULT_COMPRESSION
    mem_level: int = 8

    def __post_init__(self) -> None:
        for name in ("server_no_context_takeover", "client_no_context_takeover"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"PerMessageDeflate.{name} must be a bool")
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if bits is None:
                continue
            if isinstance(bits, bool) or not isinstance(bits, int):
                raise TypeError(f"PerMessageDeflate.{name} must be an int or None")
            if not 9 <= bits <= 15:
                raise ValueError(f"PerMessageDeflate.{name} must be between 9 and 15 "
                                 f"(zlib cannot deflate with a smaller window), not {bits}")
        if isinstance(self.level, bool) or not isinstance(self.level, int) or \
                not -1 <= self.level <= 9:
            raise ValueError(f"PerMessageDeflate.level must be -1 to 9, not {self.level!r}")
        if isinstance(self.mem_level, bool) or not isinstance(self.mem_level, int) or \
                not 1 <= self.mem_level <= 9:
            raise ValueError(f"PerMessageDeflate.mem_level must be 1 to 9, "
                             f"not {self.mem_level!r}")


#: What ``compression=`` takes: True (the defaults), False (off), or the options.
Compression = Union[bool, PerMessageDeflate]


def options(compression: object) -> Optional[PerMessageDeflate]:
    """The options ``compression`` stands for; None when it is switched off."""
    if compression is True:
        return PerMessageDeflate()
    if compression is False:
        return None
    if isinstance(compression, PerMessageDeflate):
        return compression
    raise TypeError("compression must be True, False or a PerMessageDeflate, "
                    f"not {type(compression).__name__}")


# -- Sec-WebSocket-Extensions (RFC 6455 9.1) --------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCAN = re.compile(rf'[ \t]*(?:({_TOKEN})|"((?:[^"\\]|\\.)*)"|([,;=])|(.))', re.S)
_TOKEN_RE = re.compile(_TOKEN)
_BITS_RE = re.compile(r"[1-9][0-9]?")

Element = tuple[str, list[tuple[str, Optional[str]]]]


def _lex(text: str) -> list[tuple[str, str]]:
    """``text`` as (kind, value) items: kind "t" token, "q" quoted string, or the
    separator itself. Raises ValueError on anything else."""
    items = []
    for m in _SCAN.finditer(text.rstrip(" \t")):
        token, quoted, sep, other = m.groups()
        if other is not None:
            raise ValueError(f"unexpected {other!r} in {text!r}")
        if token is not None:
            items.append(("t", token))
        elif quoted is not None:
            items.append(("q", re.sub(r"\\(.)", r"\1", quoted)))
        else:
            items.append((sep, sep))
    return items


def parse_extensions(values: Iterable[str]) -> list[Element]:
    """The extensions in Sec-WebSocket-Extensions header values, in order: each its
    name and its (parameter, value or None) pairs. Raises ValueError when malformed."""
    elements: list[Element] = []
    for text in values:
        items = _lex(text)
        at, n = 0, len(items)
        while at < n:
            kind, value = items[at]
            if kind == ",":  # an empty list element
                at += 1
                continue
            if kind != "t":
                raise ValueError(f"an extension name was expected in {text!r}")
            name, params = value, []
            at += 1
            while at < n and items[at][0] == ";":
                if at + 1 >= n or items[at + 1][0] != "t":
                    raise ValueError(f"a parameter name was expected in {text!r}")
                key, param_value = items[at + 1][1], None
                at += 2
                if at < n and items[at][0] == "=":
                    if at + 1 >= n or items[at + 1][0] not in ("t", "q"):
                        raise ValueError(f"a parameter value was expected in {text!r}")
                    param_value = items[at + 1][1]
                    if not _TOKEN_RE.fullmatch(param_value):  # 9.1: a quoted token
                        raise ValueError(f"parameter value {param_value!r} is not a token")
                    at += 2
                params.append((key, param_value))
            if at < n and items[at][0] != ",":
                raise ValueError(f"',' or ';' was expected in {text!r}")
            elements.append((name, params))
    return elements


# -- negotiation (RFC 7692 5, 7.1) ------------------------------------------------------

@dataclass(frozen=True)
class Agreed:
    """What both ends agreed on, from our side: how we deflate, how we inflate."""

    response: str  # the extension as the server's response states it
    send_bits: int
    send_reset: bool  # a fresh LZ77 window for every message we send
    recv_bits: int
    recv_reset: bool


def _bits(value: Optional[str]) -> int:
    if value is None or not _BITS_RE.fullmatch(value) or not 8 <= int(value) <= 15:
        raise ValueError(f"a window size must be 8 to 15, without leading zeros, not {value!r}")
    return int(value)


def _params(params: list[tuple[str, Optional[str]]], response: bool,
            ) -> dict[str, Union[bool, int]]:
    """The parameters of one permessage-deflate element, checked (7.1): each known,
    at most once, with a valid value. Raises ValueError otherwise."""
    found: dict[str, Union[bool, int]] = {}
    for key, value in params:
        name = key.lower()
        if name in found:
            raise ValueError(f"parameter {key} appears twice")
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise ValueError(f"{key} takes no value")
            found[name] = True
        elif name == "server_max_window_bits":
            found[name] = _bits(value)
        elif name == "client_max_window_bits":
            # In an offer the value is optional ("I can limit my window"); in a
            # response it is the limit, so required.
            found[name] = True if value is None and not response else _bits(value)
        else:
            raise ValueError(f"unknown parameter {key}")
    return found


def _answer(offer: dict[str, Union[bool, int]], opts: PerMessageDeflate) -> Optional[Agreed]:
    """The server's answer to one valid offer, None when we cannot honour it."""
    server_reset = "server_no_context_takeover" in offer or opts.server_no_context_takeover
    client_reset = "client_no_context_takeover" in offer or opts.client_no_context_takeover
    ours = opts.server_max_window_bits or 15
    asked = offer.get("server_max_window_bits")
    send_bits = ours if asked is None else min(ours, int(asked))
    if send_bits < 9:
        return None  # zlib cannot deflate with a 256-byte window
    parts = [EXTENSION]
    if server_reset:
        parts.append("server_no_context_takeover")
    if client_reset:
        parts.append("client_no_context_takeover")
    if asked is not None or send_bits < 15:
        parts.append(f"server_max_window_bits={send_bits}")
    recv_bits = 15
    client_bits = offer.get("client_max_window_bits")
    if client_bits is not None and (opts.client_max_window_bits is not None
                                    or client_bits is not True):
        # Only a client that offered the parameter may be told a window (7.1.2.2).
        offered = 15 if client_bits is True else int(client_bits)
        recv_bits = min(opts.client_max_window_bits or 15, offered)
        parts.append(f"client_max_window_bits={recv_bits}")
    return Agreed("; ".join(parts), send_bits, server_reset, max(recv_bits, 9), client_reset)


def server_agree(values: Iterable[str], opts: PerMessageDeflate) -> Optional[Agreed]:
    """The first permessage-deflate offer in the request's Sec-WebSocket-Extensions
    ``values`` we can accept, and our answer; None declines them all (RFC 7692 5)."""
    try:
        elements = parse_extensions(values)
    except ValueError:
        return None  # a header we cannot read: answer without extensions
    for name, params in elements:
        if name.lower() != EXTENSION:
            continue
        try:
            offer = _params(params, response=False)
        except ValueError:
            continue  # declined: the next offer may do
        agreed = _answer(offer, opts)
        if agreed is not None:
            return agreed
    return None


def client_offer(opts: PerMessageDeflate) -> str:
    """The Sec-WebSocket-Extensions value a client sends for ``opts``."""
    parts = [EXTENSION]
    if opts.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if opts.client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if opts.server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={opts.server_max_window_bits}")
    if opts.client_max_window_bits is not None:
        parts.append(f"client_max_window_bits={opts.client_max_window_bits}")
    else:
        parts.append("client_max_window_bits")  # we can limit our window if asked
    return "; ".join(parts)


def client_agree(values: Iterable[str], opts: PerMessageDeflate) -> Optional[Agreed]:
    """What the server's Sec-WebSocket-Extensions ``values`` accepted of our offer
    (None: no extension). Raises ValueError when the response breaks RFC 7692 7.1:
    the client must then fail the connection."""
    elements = parse_extensions(values)
    if not elements:
        return None
    names = [name for name, _ in elements]
    if len(elements) != 1 or names[0].lower() != EXTENSION:
        raise ValueError(f"the server answered with extensions {names}; only one "
                         f"{EXTENSION} was offered")
    agreed = _params(elements[0][1], response=True)
    server_bits = agreed.get("server_max_window_bits")
    if opts.server_no_context_takeover and "server_no_context_takeover" not in agreed:
        raise ValueError("the server ignored server_no_context_takeover")
    if opts.server_max_window_bits is not None and (
            server_bits is None or int(server_bits) > opts.server_max_window_bits):
        raise ValueError(f"the server did not accept server_max_window_bits="
                         f"{opts.server_max_window_bits}")
    client_bits = agreed.get("client_max_window_bits")
    if client_bits is not None:
        if opts.client_max_window_bits is not None and \
                int(client_bits) > opts.client_max_window_bits:
            raise ValueError(f"the server raised client_max_window_bits to {client_bits}")
        if int(client_bits) < 9:
            raise ValueError("the server asked for an 8-bit window, which zlib cannot "
                             "deflate with")
    send_bits = int(client_bits) if client_bits is not None else \
        opts.client_max_window_bits or 15
    return Agreed(client_offer(opts), send_bits,
                  "client_no_context_takeover" in agreed or opts.client_no_context_takeover,
                  max(int(server_bits or 15), 9), "server_no_context_takeover" in agreed)


# -- compressing and inflating (RFC 7692 7.2) -------------------------------------------

class InflateError(Exception):
    """A compressed message cannot be delivered: ``code`` is the close code to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Codec:
    """One connection's deflate and inflate state."""

    __slots__ = ("_compressor", "_decompressor", "_flush", "_level", "_limit", "_mem_level",
                 "_recv_bits", "_send_bits")

    def __init__(self, agreed: Agreed, opts: PerMessageDeflate, limit: int) -> None:
        self._send_bits = agreed.send_bits
        # Without context takeover, a full flush ends each message: what follows
        # never refers back to it, as a fresh compressor would not (and the one
        # compressor is kept: no set-up per message).
        self._flush = zlib.Z_FULL_FLUSH if agreed.send_reset else zlib.Z_SYNC_FLUSH
        self._recv_bits = agreed.recv_bits
        self._level = opts.level
        self._mem_level = opts.mem_level
        self._limit = limit
        self._compressor: Any = None  # made on first use: many endpoints only receive
        self._decompressor: Any = None

    def deflate(self, data: bytes) -> bytes:
        """The payload of a compressed message holding ``data``."""
        comp = self._compressor
        if comp is None:
            comp = self._compressor = zlib.compressobj(self._level, zlib.DEFLATED,
                                                       -self._send_bits, self._mem_level)
        out: bytes = comp.compress(data) + comp.flush(self._flush)
        return out[:-4]  # both flushes end with the empty block's 00 00 ff ff

    def inflate(self, payload: bytes, is_text: bool) -> bytes:
        """The message a compressed ``payload`` holds. Raises InflateError (1009 over
        the limit, which is never exceeded in memory; 1007 for bad data or text)."""
        inflater = self._decompressor
        if inflater is None:
            inflater = self._decompressor = zlib.decompressobj(-self._recv_bits)
        limit = self._limit
        try:
            # max_length: zlib stops one byte past the limit, whatever the ratio.
            data: bytes = inflater.decompress(payload + _TAIL, limit + 1 if limit else 0)
        except zlib.error as exc:
            raise InflateError(1007, f"cannot inflate the message: {exc}") from None
        if limit and len(data) > limit:
            raise InflateError(1009, f"the message inflates to more than {limit} bytes")
        if inflater.eof:
            # The peer ended its stream (BFINAL): the next message starts a new one.
            # Without context takeover the inflater is kept all the same: the peer's
            # messages never refer back, and a new inflater per message would cost
            # its set-up every time.
            self._decompressor = None
        if is_text:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise InflateError(1007, "invalid UTF-8 in a text message") from None
        return data


class _DeflateHandler:
    """Wraps a negotiated connection's handler: compressed messages arrive inflated."""

    __slots__ = ("codec", "failed", "inner", "wants_messages")

    def __init__(self, inner: Optional[EventHandler], codec: Codec, interest: int) -> None:
        self.inner = inner
        self.codec = codec
        self.wants_messages = bool(interest & _WS_MSG_BIT) and inner is not None
        self.failed = False

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        inner = self.inner
        if ev == MG_EV_WS_MSG:
            if self.failed:
                return
            flags = data.flags
            if flags & _RSV1:
                try:
                    payload = self.codec.inflate(data.data, flags & 0x0F == WEBSOCKET_OP_TEXT)
                except InflateError as exc:
                    self.failed = True
                    c = conn._c
                    if c is not None:
                        lib.pymg_ws_fail(c, exc.code)
                        conn._work_queued()
                    return
                if not self.wants_messages or inner is None:
                    return
                view = QueuedWsMessage()  # a view holding its own payload, as queued ones do
                view.data = payload
                view.flags = flags & ~_RSV1
                try:
                    inner(conn, ev, view)
                finally:
                    view._expire()
                return
            if not self.wants_messages:
                return  # forced on only to keep the inflater in step
        if inner is not None:
            inner(conn, ev, data)


class DeflateConnection(Connection):
    """A WebSocket connection that agreed on permessage-deflate: text and binary
    messages go out compressed; everything else is a :class:`Connection`'s."""

    __slots__ = ()

    def ws_send(self, data: Union[bytes, str], op: int = WEBSOCKET_OP_TEXT) -> int:
        """Send one WebSocket message, compressed when it is text or binary; returns the
        bytes queued (header included)."""
        if op != WEBSOCKET_OP_TEXT and op != WEBSOCKET_OP_BINARY:
            return Connection.ws_send(self, data, op)
        c = self._c
        if c is None:
            raise ConnectionClosedError(f"connection {self._id} is closed")
        if isinstance(data, str):
            raw = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
        payload = cast(_DeflateHandler, self._handler).codec.deflate(raw)
        queued: int = _mg_ws_send(c, payload, len(payload), op | _RSV1)
        self._work_queued()
        return queued

    @property
    def handler(self) -> Optional[EventHandler]:
        """The handler that receives this connection's events."""
        return cast(_DeflateHandler, self._handler).inner

    def set_handler(self, handler: Optional[EventHandler], *,
                    events: Optional[Iterable[int]] = None) -> None:
        """Route this connection's events to ``handler`` (see Connection.set_handler);
        compressed messages still reach it inflated."""
        wrapper = cast(_DeflateHandler, self._handler)
        Connection.set_handler(self, handler, events=events)
        wrapper.inner = handler
        wrapper.wants_messages = bool(self._interest & _WS_MSG_BIT) and handler is not None
        self._handler = wrapper
        # The inflater must see every compressed message, wanted or not.
        lib.pymg_set_interest(self._live(), self._interest | _WS_MSG_BIT)


def enable(conn: Connection, agreed: Agreed, opts: PerMessageDeflate,
           limit: int = Limits.max_ws_message_size) -> None:
    """Switch ``conn`` to permessage-deflate as ``agreed``. ``limit``: the inflated
    message limit when ``conn`` has none of its own in C (a client connection)."""
    c = conn._live()
    own = lib.pymg_ws_deflate_on(c)
    if own != _NO_LIMIT:
        limit = int(own)
    conn._handler = _DeflateHandler(conn._handler, Codec(agreed, opts, limit), conn._interest)
    conn.__class__ = DeflateConnection
    lib.pymg_set_interest(c, conn._interest | _WS_MSG_BIT)


def _disable(conn: Connection) -> None:
    """Undo :func:`enable` on a connection the upgrade did not happen on."""
    wrapper = cast(_DeflateHandler, conn._handler)
    conn.__class__ = Connection
    conn._handler = wrapper.inner
    c = conn._c
    if c is not None:
        lib.pymg_set_interest(c, conn._interest)


def extension_values(headers: Iterable[tuple[Any, Any]]) -> list[str]:
    """The Sec-WebSocket-Extensions values among ``headers`` (str or bytes pairs)."""
    values = []
    for name, value in headers:
        if isinstance(name, bytes):
            name, value = name.decode("latin-1"), value.decode("latin-1")
        if name.lower() == "sec-websocket-extensions":
            values.append(value)
    return values


def upgrade(conn: Connection, message: HttpMessage, extra: bytes,
            compression: Compression, limit: int) -> None:
    """Connection.ws_upgrade for a request that offered extensions: answer the first
    permessage-deflate offer we can honour, then upgrade."""
    opts = options(compression)
    agreed = None
    if opts is not None and not any(line.lower().startswith(b"sec-websocket-extensions:")
                                    for line in extra.split(b"\r\n")):
        agreed = server_agree(extension_values(message.headers()), opts)
    c = conn._live()
    if agreed is None:
        lib.pymg_ws_upgrade(c, message._live(), extra)
        return
    # Before the upgrade: MG_EV_WS_OPEN and the frames that came with the request
    # already find the connection compressing.
    enable(conn, agreed, opts, limit)  # type: ignore[arg-type]
    header = f"Sec-WebSocket-Extensions: {agreed.response}\r\n".encode("latin-1")
    lib.pymg_ws_upgrade(c, message._live(), extra + header)
    if not conn.is_websocket and not conn.is_closed:
        _disable(conn)


class ClientHandshake:
    """The handler of a ws_connect() connection that offered permessage-deflate until
    its handshake completes: reads the server's answer, then steps aside."""

    __slots__ = ("inner", "interest", "limit", "opts")

    def __init__(self, inner: Optional[EventHandler], interest: int, opts: PerMessageDeflate,
                 limit: int) -> None:
        self.inner = inner
        self.interest = interest
        self.opts = opts
        self.limit = limit

    def route(self) -> tuple[EventHandler, int]:
        """The (handler, interest) a client connection opens with."""
        return self, self.interest | _WS_OPEN_BIT

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        inner, interest = self.inner, self.interest
        if ev == MG_EV_WS_OPEN:
            try:
                agreed = client_agree(extension_values(data.headers()), self.opts)
            except ValueError as exc:
                _restore(conn, inner, interest)
                conn.error(f"WebSocket handshake: permessage-deflate: {exc}")
                return
            _restore(conn, inner, interest)
            if agreed is not None:
                enable(conn, agreed, self.opts, self.limit)
        if inner is not None and (ev >= 64 or (interest >> ev) & 1):
            inner(conn, ev, data)


def client_setup(extra: bytes, route: tuple[Optional[EventHandler], int],
                 compression: Compression, limit: int,
                 ) -> tuple[bytes, tuple[Optional[EventHandler], int]]:
    """Manager.ws_connect with ``compression``: the upgrade request's extra header
    lines with our offer, and the route that reads the server's answer."""
    opts = options(compression)
    if opts is None:
        return extra, route
    if any(line.lower().startswith(b"sec-websocket-extensions:") for line in extra.split(b"\r\n")):
        raise ValueError("ws_connect: pass either compression or a Sec-WebSocket-Extensions "
                         "header, not both")
    offer = f"Sec-WebSocket-Extensions: {client_offer(opts)}\r\n".encode("latin-1")
    return extra + offer, ClientHandshake(route[0], route[1], opts, limit).route()


def _restore(conn: Connection, handler: Optional[EventHandler], interest: int) -> None:
    conn._handler = handler
    conn._interest = interest
    c = conn._c
    if c is not None:
        lib.pymg_set_interest(c, interest)
