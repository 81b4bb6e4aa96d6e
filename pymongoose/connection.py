"""Connection: one Mongoose connection (listener, accepted peer or outbound client)."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from . import dns, sntp
from ._ffi import ffi, lib
from ._interest import mask_events
from .constants import (
    WEBSOCKET_OP_TEXT,
)
from .errors import ConnectionClosedError
from .messages import HttpMessage
from .mqtt import client as _mqtt
from .tls import TlsOpts

if TYPE_CHECKING:
    from .manager import Manager
    from .ws_deflate import PerMessageDeflate

__all__ = ["Connection", "EventHandler", "Headers"]

#: ``handler(conn, ev, data)``: the signature of every event handler.
EventHandler = Callable[["Connection", int, Any], Any]
#: Headers as a mapping or as ``(name, value)`` pairs.
Headers = Union[Mapping[str, str], Iterable[tuple[str, str]]]

_PLAIN_TEXT = b"Content-Type: text/plain; charset=utf-8\r\n"
_JSON = b"Content-Type: application/json\r\n"

# Hot-path C functions, looked up once (attribute access on ``lib`` is not free).
_http_reply = lib.pymg_http_reply
_mg_send = lib.mg_send
_pymg_ws_send = lib.pymg_ws_send

#: How many Managers have a work-queued hook installed (pymongoose.aio sets them): while
#: none has, ws_send skips looking for one.
_wake_hooks = 0

_F_LISTENING = lib.PYMG_LISTENING
_F_CLIENT = lib.PYMG_CLIENT
_F_UDP = lib.PYMG_UDP
_F_TLS = lib.PYMG_TLS
_F_WEBSOCKET = lib.PYMG_WEBSOCKET
_F_DRAINING = lib.PYMG_DRAINING
_F_CLOSING = lib.PYMG_CLOSING
_F_FULL = lib.PYMG_FULL
_F_READABLE = lib.PYMG_READABLE
_F_WRITABLE = lib.PYMG_WRITABLE


#: The largest UDP datagram send() takes: a Mongoose peer receives at most this much
#: of one (Mongoose's MG_IO_SIZE), and cuts the rest off without a word.
UDP_DATAGRAM_MAX: int = lib.PYMG_IO_SIZE


def _send_error(c: Any, conn_id: int, err: int) -> Exception:
    """Why mg_send() failed: TCP only when out of memory; UDP when sendto() did."""
    flags = lib.pymg_conn_flags(c)
    if not flags & _F_UDP:
        return MemoryError(f"connection {conn_id}: cannot grow the send buffer")
    if err == errno.EBADF and flags & lib.PYMG_RESOLVING:
        return OSError(err, f"connection {conn_id}: no socket yet, its host name is still "
                            "being resolved (send from MG_EV_CONNECT); Mongoose closes the "
                            "connection (MG_EV_CLOSE at the next poll)")
    if err in (errno.EAGAIN, errno.EWOULDBLOCK):
        return BlockingIOError(err, f"connection {conn_id}: the socket's send buffer is "
                                    "full; the datagram was not sent (try again later)")
    reason = os.strerror(err) if err else "unknown error"
    return OSError(err, f"connection {conn_id}: sending the UDP datagram failed: {reason}; "
                        "Mongoose closes the connection (MG_EV_CLOSE at the next poll)")


def _check_header_part(text: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError(f"header {what} must be str, not {type(text).__name__}")
    if "\r" in text or "\n" in text or "\0" in text:
        # Either would let the text end the header early (header injection).
        raise ValueError(f"Header {what} {text!r} contains an illegal character "
                         "(a line break or NUL)")
    return text.encode("latin-1")


def format_headers(headers: Optional[Headers], *, forbid: tuple[str, ...] = ()) -> bytes:
    """``Name: value\\r\\n`` lines for ``headers``, refusing line breaks (header injection)."""
    if headers is None:
        return b""
    if isinstance(headers, str):
        raise TypeError("headers must be a mapping or (name, value) pairs, not str")
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = []
    for name, value in items:
        raw_name = _check_header_part(name, "name")
        if not raw_name or b":" in raw_name:
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in forbid:
            raise ValueError(f"the {name} header is set by pymongoose itself")
        lines.append(raw_name + b": " + _check_header_part(value, "value") + b"\r\n")
    return b"".join(lines)


def _as_send_buffer(data: object) -> Any:
    """``data`` as something C can read: bytes as they are, str UTF-8 encoded, other
    buffers without a copy. send() and ws_send() inline this: they run per message."""
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
    return ffi.from_buffer(data)


def _has_header(raw: bytes, name: bytes) -> bool:
    return any(line.lower().startswith(name + b":") for line in raw.split(b"\r\n"))


def _check_status(status_code: object) -> None:
    if not isinstance(status_code, int) or isinstance(status_code, bool):
        raise TypeError(f"status_code must be int, not {type(status_code).__name__}")
    if not 100 <= status_code <= 999:
        raise ValueError(f"status_code must be between 100 and 999, not {status_code}")


# Formatted response heads by their header items: handlers usually pass the same few
# dicts again and again. Bounded, so varying values cannot grow it without limit.
_HEAD_CACHE: dict[tuple[tuple[str, str], ...], tuple[bytes, int]] = {}
_HEAD_CACHE_MAX = 256

# How a reply's length is known: Content-Length (the usual), or not at all because the
# headers open a stream: chunked transfer encoding, or a Server-Sent Events stream.
_SIZED, _CHUNKED, _EVENT_STREAM = 0, 1, 2


def _format_response_head(headers: Headers) -> tuple[bytes, int]:
    head = format_headers(headers, forbid=("content-length",))
    if not _has_header(head, b"content-type"):
        head += _PLAIN_TEXT
    lines = head.lower().split(b"\r\n")
    if any(line.startswith(b"transfer-encoding:") and b"chunked" in line for line in lines):
        return head, _CHUNKED
    if any(line.startswith(b"content-type:") and b"text/event-stream" in line
           for line in lines):
        return head, _EVENT_STREAM
    return head, _SIZED


def _response_head(headers: Headers) -> tuple[bytes, int]:
    """The header lines of a reply (``headers`` plus a default Content-Type), and how
    its length is told."""
    if type(headers) is not dict:
        return _format_response_head(headers)
    key = tuple(headers.items())
    try:
        entry = _HEAD_CACHE.get(key)
    except TypeError:  # an unhashable value: format_headers says what is wrong
        return _format_response_head(headers)
    if entry is None:
        entry = _format_response_head(headers)
        if len(_HEAD_CACHE) >= _HEAD_CACHE_MAX:
            _HEAD_CACHE.clear()
        _HEAD_CACHE[key] = entry
    return entry


def _extra_headers_text(extra: Union[str, Headers, None]) -> bytes:
    """Extra response headers given as a str of CRLF lines or as a mapping."""
    if extra is None or extra == "":
        return b""
    if isinstance(extra, str):
        text = extra.replace("\r\n", "\n").strip("\n")
        return format_headers(
            [tuple(p.strip() for p in line.split(":", 1)) for line in text.split("\n")]  # type: ignore[misc]
        )
    return format_headers(extra)


def _format_addr(addr: Any) -> tuple[str, int, bool]:
    if addr.is_ip6:
        ip = socket.inet_ntop(socket.AF_INET6, bytes(ffi.buffer(addr.ip, 16)))
    else:
        ip = socket.inet_ntop(socket.AF_INET, bytes(ffi.buffer(addr.ip, 4)))
    return ip, int(addr.port), bool(addr.is_ip6)


class Connection:
    """One Mongoose connection; handed to every event handler as its first argument.

    A Connection is valid until its ``MG_EV_CLOSE`` event has been handled. After that,
    methods that need the C connection raise :class:`ConnectionClosedError`, and
    ``is_closing`` stays True. ``userdata`` holds anything you want to keep with it.
    """

    __slots__ = ("__weakref__", "_c", "_gone_flags", "_handler", "_id", "_interest", "_manager",
                 "_peer_host", "_sse_raw", "userdata")

    def __init__(self, manager: Manager, c: Any, handler: Optional[EventHandler],
                 interest: int) -> None:
        self._manager = manager
        self._c: Any = c
        self._id: int = int(c.id)
        self._handler = handler
        self._interest = interest
        self._peer_host = b""  # a client's URL host: its default TLS server name
        self._sse_raw = False  # reply() opened an event stream that is not chunked
        self._gone_flags = _F_CLOSING  # _flags() once closed
        #: Anything you want to keep with this connection.
        self.userdata: Any = None

    # -- life cycle ---------------------------------------------------------------------

    def _live(self) -> Any:
        c = self._c
        if c is None:
            raise ConnectionClosedError(f"connection {self._id} is closed")
        return c

    def _detach(self, final_flags: int = 0) -> None:
        # What the connection was (client, UDP) stays known once it is closed.
        self._gone_flags = (final_flags & (_F_CLIENT | _F_UDP)) | _F_CLOSING
        self._c = None

    def _work_queued(self) -> None:
        """Let an outside event loop (pymongoose.aio) know the next poll has work to do."""
        # send(), reply() and ws_send() inline this: they are the hot path.
        wake = self._manager._on_work_queued
        if wake is not None:
            wake()

    # -- identity and state -------------------------------------------------------------

    @property
    def id(self) -> int:
        """Mongoose's connection id: unique within its Manager, never reused."""
        return self._id

    @property
    def manager(self) -> Manager:
        """The Manager this connection belongs to."""
        return self._manager

    @property
    def handler(self) -> Optional[EventHandler]:
        """The handler that receives this connection's events."""
        return self._handler

    def set_handler(self, handler: Optional[EventHandler], *,
                    events: Optional[Iterable[int]] = None) -> None:
        """Route this connection's events to ``handler``.

        ``events``: the MG_EV_* codes to deliver (default: those the handler's
        source tests, see :class:`Manager`, else all). A listener's handler
        and events are inherited by the connections it accepts from then on.
        ``handler=None`` reverts to the Manager's handler (and its events), as when the
        connection was opened without one.
        """
        c = self._live()
        handler, interest = self._manager._route_for(handler, events)
        self._handler = handler
        self._interest = interest
        lib.pymg_set_interest(c, interest)

    @property
    def events(self) -> Optional[frozenset[int]]:
        """The MG_EV_* codes routed to this connection's handler (declared, or inferred
        from its source); None when every event is. Codes from 64 up always are."""
        return mask_events(self._interest)

    def _flags(self) -> int:
        c = self._c
        return lib.pymg_conn_flags(c) if c is not None else self._gone_flags  # type: ignore[no-any-return]

    @property
    def is_closed(self) -> bool:
        """True once Mongoose has closed and freed the connection."""
        return self._c is None

    @property
    def is_listening(self) -> bool:
        """True for a listening connection."""
        return bool(self._flags() & _F_LISTENING)

    @property
    def is_closing(self) -> bool:
        """True when the connection is being closed (or is closed)."""
        return bool(self._flags() & _F_CLOSING)

    @property
    def is_client(self) -> bool:
        """True for an outbound connection made with connect()."""
        return bool(self._flags() & _F_CLIENT)

    @property
    def is_udp(self) -> bool:
        """True for a UDP connection."""
        return bool(self._flags() & _F_UDP)

    @property
    def is_tls(self) -> bool:
        """True when the connection uses TLS."""
        return bool(self._flags() & _F_TLS)

    @property
    def is_websocket(self) -> bool:
        """True once the connection speaks WebSocket."""
        return bool(self._flags() & _F_WEBSOCKET)

    @property
    def is_draining(self) -> bool:
        """True after drain(): sending what is buffered, then closing."""
        return bool(self._flags() & _F_DRAINING)

    @property
    def is_full(self) -> bool:
        """True when Mongoose paused reading because the receive buffer is full."""
        return bool(self._flags() & _F_FULL)

    @property
    def is_readable(self) -> bool:
        """True when the socket had data to read at the last poll."""
        return bool(self._flags() & _F_READABLE)

    @property
    def is_writable(self) -> bool:
        """True when the socket could be written at the last poll."""
        return bool(self._flags() & _F_WRITABLE)

    @property
    def local_addr(self) -> Optional[tuple[str, int, bool]]:
        """``(ip, port, is_ipv6)`` of our end; for a listener on port 0, the real port."""
        c = self._c
        if c is None:
            return None
        addr = ffi.new("struct pymg_addr *")
        lib.pymg_conn_addr(c, 0, addr)
        return _format_addr(addr)

    @property
    def remote_addr(self) -> Optional[tuple[str, int, bool]]:
        """``(ip, port, is_ipv6)`` of the peer."""
        c = self._c
        if c is None:
            return None
        addr = ffi.new("struct pymg_addr *")
        lib.pymg_conn_addr(c, 1, addr)
        return _format_addr(addr)

    @property
    def recv_len(self) -> int:
        """Bytes waiting in the receive buffer."""
        c = self._c
        return int(c.recv.len) if c is not None else 0

    @property
    def send_len(self) -> int:
        """Bytes waiting in the send buffer."""
        c = self._c
        return int(c.send.len) if c is not None else 0

    @property
    def recv_size(self) -> int:
        """Allocated size of the receive buffer."""
        c = self._c
        return int(c.recv.size) if c is not None else 0

    @property
    def send_size(self) -> int:
        """Allocated size of the send buffer."""
        c = self._c
        return int(c.send.size) if c is not None else 0

    # -- raw data -----------------------------------------------------------------------

    def send(self, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Queue raw bytes for sending (str is UTF-8 encoded)."""
        c = self._c
        if c is None:
            raise ConnectionClosedError(f"connection {self._id} is closed")
        data_type = type(data)  # _as_send_buffer, inlined: this runs per message
        if data_type is str:
            data = data.encode("utf-8")  # type: ignore[union-attr]
        elif data_type is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
            data = ffi.from_buffer(data)
        size = len(data)
        if size > UDP_DATAGRAM_MAX and lib.pymg_conn_flags(c) & _F_UDP:
            raise ValueError(f"connection {self._id}: a UDP datagram of {size} bytes is over "
                             f"the {UDP_DATAGRAM_MAX}-byte limit (Mongoose's MG_IO_SIZE)")
        if size and not _mg_send(c, data, size):
            raise _send_error(c, self._id, ffi.errno)  # errno first: the next C call sets it
        wake = self._manager._on_work_queued
        if wake is not None:
            wake()

    def recv_data(self, length: int = -1, *, consume: bool = False) -> bytes:
        """A copy of up to ``length`` bytes (-1: all) of the receive buffer.

        Raw TCP/UDP handlers read in ``MG_EV_READ``; pass ``consume=True`` to also remove
        what was returned from the buffer (otherwise it stays, and grows).
        """
        c = self._c
        if c is None:
            return b""  # closed: nothing buffered (recv_len is 0), as cymongoose says
        available = int(c.recv.len)
        n = available if length < 0 else min(length, available)
        data = ffi.unpack(ffi.cast("char *", c.recv.buf), n) if n else b""
        if consume and n:
            lib.pymg_recv_consume(c, n)
        return data

    def send_data(self, length: int = -1) -> bytes:
        """A copy of up to ``length`` bytes (-1: all) of the send buffer, not yet sent."""
        c = self._c
        if c is None:
            return b""
        available = int(c.send.len)
        n = available if length < 0 else min(length, available)
        return ffi.unpack(ffi.cast("char *", c.send.buf), n) if n else b""

    # -- HTTP ---------------------------------------------------------------------------

    def reply(self, status_code: int, body: Union[bytes, str] = b"",
              headers: Optional[Headers] = None) -> None:
        """Send a complete HTTP response with Content-Length.

        ``Content-Type: text/plain; charset=utf-8`` is added unless ``headers`` name a
        Content-Type. The status line and Content-Length are composed in C; the reply to
        a HEAD request carries the length but no body.
        """
        c = self._c
        if c is None:
            raise ConnectionClosedError(f"connection {self._id} is closed")
        if type(status_code) is not int or not 100 <= status_code <= 999:
            _check_status(status_code)
        body_type = type(body)
        if body_type is str:
            body = body.encode("utf-8")  # type: ignore[union-attr]
        elif body_type is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError(f"body must be bytes or str, not {type(body).__name__}")
            body = ffi.from_buffer(body)
        if headers is None:
            head, framing = _PLAIN_TEXT, _SIZED
        else:
            try:
                head, framing = _HEAD_CACHE[tuple(headers.items())]  # type: ignore[union-attr]
            except (KeyError, TypeError, AttributeError):
                head, framing = _response_head(headers)
        if framing:
            self._reply_stream(c, status_code, head, framing, body)
        else:
            _http_reply(c, status_code, head, len(head), body, len(body))
        wake = self._manager._on_work_queued
        if wake is not None:
            wake()

    def _reply_stream(self, c: Any, status_code: int, head: bytes, framing: int,
                      body: Any) -> None:
        """The head of a chunked or event-stream reply; ``body`` as its first part."""
        self._sse_raw = framing == _EVENT_STREAM
        lib.pymg_http_reply_head(c, status_code, head, len(head))
        if len(body):
            if framing == _CHUNKED:
                lib.mg_http_write_chunk(c, body, len(body))
            else:
                _mg_send(c, body, len(body))

    def http_chunk(self, data: Union[bytes, str]) -> None:
        """Send one chunk of a chunked reply; an empty chunk ends the reply.

        Start with ``reply(status, headers={"Transfer-Encoding": "chunked"})``.
        """
        c = self._live()
        buffer = _as_send_buffer(data)
        lib.mg_http_write_chunk(c, buffer, len(buffer))
        self._work_queued()

    def http_sse(self, event_type: str, data: str) -> None:
        """Send one Server-Sent Event: ``event: <event_type>`` and ``data:`` lines.

        Start with ``reply(200, headers={"Content-Type": "text/event-stream"})``: the
        events then follow the head as they are. In any other response (a chunked
        reply, or a head written with send(), as cymongoose's examples do) each event
        is sent as one HTTP chunk; end that response with ``http_chunk("")``. A
        multi-line ``data`` becomes one ``data:`` line per line, as the format requires.
        """
        c = self._live()
        if not isinstance(event_type, str) or not isinstance(data, str):
            raise TypeError("event_type and data must be str")
        if "\r" in event_type or "\n" in event_type:
            raise ValueError(f"event_type {event_type!r} contains a line break")
        lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        frame = f"event: {event_type}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"
        raw = frame.encode("utf-8")
        if self._sse_raw:
            _mg_send(c, raw, len(raw))
        else:
            lib.mg_http_write_chunk(c, raw, len(raw))
        self._work_queued()

    def http_basic_auth(self, username: str, password: str) -> None:
        """Queue an ``Authorization: Basic`` header line (for a request being sent)."""
        c = self._live()
        if not isinstance(username, str) or not isinstance(password, str):
            raise TypeError("username and password must be str")
        if "\0" in username or "\0" in password or ":" in username:
            raise ValueError("username must not contain ':' and neither may contain NUL")
        lib.mg_http_bauth(c, username.encode("utf-8"), password.encode("utf-8"))
        self._work_queued()

    def error(self, message: str) -> None:
        """Raise MG_EV_ERROR with ``message`` on this connection, then close it."""
        c = self._live()
        if not isinstance(message, str):
            raise TypeError(f"message must be str, not {type(message).__name__}")
        lib.pymg_error(c, message.replace("\0", "\\0").encode("utf-8"))
        self._work_queued()

    def reply_json(self, data: Any, status_code: int = 200,
                   headers: Optional[Headers] = None) -> None:
        """Send ``data`` serialised with ``json.dumps`` as ``application/json``."""
        c = self._live()
        if not isinstance(status_code, int) or not 100 <= status_code <= 999:
            raise ValueError(f"status_code must be an int between 100 and 999, not {status_code!r}")
        body = json.dumps(data).encode("utf-8")
        extra = b"" if headers is None else format_headers(
            [(k, v) for k, v in (headers.items() if isinstance(headers, Mapping) else headers)
             if k.lower() != "content-type"],
            forbid=("content-length",),
        )
        head = _JSON + extra
        lib.pymg_http_reply(c, status_code, head, len(head), body, len(body))
        self._work_queued()

    def _serve(self, message: HttpMessage, path: str, is_file: bool, extra_headers: Any,
               mime_types: str, page404: str, caller: str, policy: int = 0) -> None:
        c = self._live()
        if not isinstance(message, HttpMessage):
            raise TypeError(f"{caller} needs the HttpMessage of an MG_EV_HTTP_MSG event, "
                            f"not {type(message).__name__}")
        hm = message._live()
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{caller}: path must be str or os.PathLike")
        fs_path = os.fspath(path)
        if not is_file and not os.path.isdir(fs_path):
            raise FileNotFoundError(f"{caller}: root_dir {fs_path!r} is not a directory")
        if not isinstance(mime_types, str) or not isinstance(page404, str):
            raise TypeError(f"{caller}: mime_types and page404 must be str")
        extra = _extra_headers_text(extra_headers)
        if is_file:
            lib.pymg_http_serve(c, hm, os.fsencode(fs_path), 1, extra,
                                mime_types.encode("utf-8"), os.fsencode(page404))
        else:
            lib.pymg_serve_dir_safe(c, hm, os.fsencode(fs_path), policy, extra,
                                    mime_types.encode("utf-8"), os.fsencode(page404))
        self._work_queued()

    def serve_dir(self, message: HttpMessage, root_dir: str, extra_headers: Any = "",
                  mime_types: str = "", page404: str = "", *, allow_hidden: bool = False,
                  list_dirs: bool = False) -> None:
        """Answer ``message`` with a file under ``root_dir`` (Mongoose's static handler).

        Handles index.html, MIME types, ETag / If-None-Match (304), Range (206) and refuses
        paths that escape ``root_dir``, in any encoding or through a symlink (404).
        Dotfiles and dot-folders get 404 unless ``allow_hidden``; a folder without an
        index file gets 403 unless ``list_dirs`` (then an HTML listing, without what
        would be refused). ``mime_types``: extra ``"ext=type,..."`` pairs;
        ``extra_headers``: CRLF-separated lines or a mapping; ``page404``: a file to send
        for missing paths.
        """
        policy = ((lib.PYMG_STATIC_ALLOW_HIDDEN if allow_hidden else 0)
                  | (lib.PYMG_STATIC_LIST_DIRS if list_dirs else 0))
        self._serve(message, root_dir, False, extra_headers, mime_types, page404, "serve_dir",
                    policy)

    def serve_file(self, message: HttpMessage, path: str, extra_headers: Any = "",
                   mime_types: str = "") -> None:
        """Answer ``message`` with one file (ETag, 304, Range and MIME type as serve_dir)."""
        self._serve(message, path, True, extra_headers, mime_types, "", "serve_file")

    # -- streamed request bodies and flow control ---------------------------------------

    def stream_body(self, message: HttpMessage) -> None:
        """Receive this request's body in pieces instead of buffered whole.

        Call it from the ``MG_EV_HTTP_HDRS`` handler of a server connection, with that
        event's message. The body then arrives as ``PYMG_EV_HTTP_BODY`` events (``data``:
        bytes, up to 64 KiB each) and one ``PYMG_EV_HTTP_BODY_END`` (``data``: None); no
        ``MG_EV_HTTP_MSG`` follows for this request, so answer it after (or before) the
        end. Content-Length and chunked bodies are handled, as is ``Expect:
        100-continue``; keep-alive continues once the body ended. Use
        :meth:`pause_reading` to make a fast client wait for a slow consumer.

        Raises ValueError for an unsupported Transfer-Encoding or a malformed
        Content-Length: the connection then reads no more and closes once what you
        send (say, a 400 reply) is out. Raises RuntimeError outside a server
        connection's ``MG_EV_HTTP_HDRS``.
        """
        c = self._live()
        if not isinstance(message, HttpMessage):
            raise TypeError("stream_body needs the HttpMessage of an MG_EV_HTTP_HDRS event, "
                            f"not {type(message).__name__}")
        rc = lib.pymg_stream_body(c, message._live())
        if rc == -2:
            raise ValueError("stream_body: unsupported Transfer-Encoding (only chunked)")
        if rc == -3:
            raise ValueError("stream_body: the Content-Length header is not a number")
        if rc != 0:
            raise RuntimeError("stream_body works only in the MG_EV_HTTP_HDRS handler of a "
                               "server-side HTTP connection, once per request")
        self._work_queued()

    def pause_reading(self) -> None:
        """Stop reading from the socket (and passing on body pieces) until resumed.

        The peer's data waits in the kernel, then in the peer: flow control for a slow
        consumer. Works for any connection, streamed request bodies included.
        """
        lib.pymg_pause(self._live(), 1)

    def resume_reading(self) -> None:
        """Undo pause_reading(): buffered and new data flows again from the next poll."""
        lib.pymg_pause(self._live(), 0)
        self._work_queued()

    @property
    def is_paused(self) -> bool:
        """True between pause_reading() and resume_reading()."""
        c = self._c
        return c is not None and bool(lib.pymg_is_paused(c))

    @property
    def is_busy(self) -> bool:
        """True while a request is being received or answered, or data waits to be sent.

        An HTTP server connection is busy from a request's head until its reply was
        queued and sent; Manager.shutdown() waits for busy connections.
        """
        c = self._c
        return c is not None and bool(lib.pymg_conn_busy(c))

    def http_end(self) -> None:
        """Mark the current HTTP response complete after writing it yourself with send().

        reply(), an empty http_chunk() and serve_dir() do this on their own. Until then
        the next pipelined request on the connection waits, and the connection is busy.
        """
        lib.pymg_http_end(self._live())
        self._work_queued()

    # -- WebSocket ----------------------------------------------------------------------

    def ws_upgrade(self, message: HttpMessage,
                   extra_headers: Optional[Headers] = None, *,
                   compression: Union[bool, PerMessageDeflate] = True) -> None:
        """Answer an HTTP request with the WebSocket handshake; MG_EV_WS_OPEN follows.

        ``compression``: accept the client's permessage-deflate offer (RFC 7692) with
        the default options (True), with a :class:`PerMessageDeflate`, or never (False).
        """
        c = self._live()
        if not isinstance(message, HttpMessage):
            raise TypeError("ws_upgrade needs the HttpMessage of an MG_EV_HTTP_MSG event, "
                            f"not {type(message).__name__}")
        hm = message._live()
        extra = format_headers(extra_headers)
        if compression is not True and compression is not False:
            from .ws_deflate import options

            options(compression)  # raises TypeError for anything but PerMessageDeflate
        if compression is not False and \
                lib.mg_http_get_header(hm, b"Sec-WebSocket-Extensions") != ffi.NULL:
            from .ws_deflate import upgrade  # only for clients that offer extensions

            upgrade(self, message, extra, compression, self._manager.limits.max_ws_message_size)
        else:
            lib.pymg_ws_upgrade(c, hm, extra)
        self._work_queued()

    def ws_send(self, data: Union[bytes, str], op: int = WEBSOCKET_OP_TEXT) -> int:
        """Send one WebSocket frame; returns the bytes queued (header included)."""
        c = self._c
        if c is None:
            raise ConnectionClosedError(f"connection {self._id} is closed")
        if type(data) is not bytes:  # the per-message path is bytes: one test for it
            data = _as_send_buffer(data)
        queued: int = _pymg_ws_send(c, data, len(data), op)  # the opcode is checked in C
        if queued < 0:
            raise ValueError(f"op must be one of the WEBSOCKET_OP_* codes, not {op!r}")
        if _wake_hooks:  # an outside loop (pymongoose.aio) waits for work: tell it
            wake = self._manager._on_work_queued
            if wake is not None:
                wake()
        return queued

    # -- TLS ----------------------------------------------------------------------------

    def tls_init(self, opts: TlsOpts) -> None:
        """Use TLS on this connection, set up in C at the moment Mongoose needs it.

        On a listener, every connection it accepts from now on does the server side of
        the handshake (``opts`` needs ``cert`` and ``key``; with ``ca``, clients must
        present a certificate it signed). Options without a certificate make the
        listener TLS-only with options per connection: its handler must call
        ``conn.tls_init(TlsOpts(cert=..., key=...))`` in MG_EV_ACCEPT, or the accepted
        connection fails with MG_EV_ERROR (it never talks plain text).

        On a client, call it right after ``connect()`` (or in MG_EV_CONNECT): the
        handshake starts as soon as the TCP connection is up, and the server is verified
        against ``opts.ca`` and ``opts.name`` (default: the
        URL's host); without ``ca``, ``skip_verification=True`` is required. A
        failed handshake raises MG_EV_ERROR ("TLS handshake failed: ...") and closes
        the connection.
        """
        c = self._live()
        if not isinstance(opts, TlsOpts):
            raise TypeError(f"tls_init needs a TlsOpts, not {type(opts).__name__}")
        flags = self._flags()
        if flags & _F_UDP:
            raise ValueError("TLS needs a TCP connection; this one is UDP")
        if flags & _F_CLIENT:
            opts._check_client()
        elif flags & _F_LISTENING and not opts.cert:
            # No certificate for the listener: it speaks TLS with options given per
            # connection, by tls_init in MG_EV_ACCEPT (what cymongoose's listeners did).
            lib.pymg_tls_listen_per_connection(c)
            return
        else:
            opts._check_server()
        result = lib.pymg_tls_set(c, opts._conf(bool(flags & _F_CLIENT), self._peer_host))
        if result == lib.PYMG_TLS_ALREADY:
            raise RuntimeError(f"connection {self._id} already speaks TLS")
        if result == lib.PYMG_TLS_FAILED:
            raise ConnectionClosedError(
                f"connection {self._id} is closing; TLS was not set up (see its MG_EV_ERROR)"
            )
        self._work_queued()

    def tls_free(self) -> None:
        """Drop this connection's TLS options; Mongoose frees them on close anyway.

        A listener's or a not-yet-connected client's options are forgotten (an
        https/wss URL then fails with MG_EV_ERROR instead of falling back to plain
        text). A connection with a TLS session is closed, since its peer's bytes could
        no longer be read.
        """
        c = self._c
        if c is not None:
            lib.pymg_tls_free(c)
            self._work_queued()

    # -- MQTT ---------------------------------------------------------------------------

    @property
    def mqtt_version(self) -> int:
        """4 (MQTT 3.1.1) or 5 for an MQTT connection, 0 otherwise.

        A broker-side connection says 4 until its client's CONNECT told otherwise.
        """
        return _mqtt.version(self)

    def mqtt_pub(self, topic: str, message: Union[bytes, str], qos: int = 0,
                 retain: bool = False, *,
                 properties: Optional[_mqtt.MqttProperties] = None) -> int:
        """Publish ``message`` on ``topic``; returns the packet id (0 for QoS 0).

        Works on a client and on a broker-side connection (to forward a message).
        ``properties`` (MQTT 5 only): ``(MQTT_PROP_*, value)`` pairs.
        """
        return _mqtt.publish(self, topic, message, qos, retain, properties)

    def mqtt_sub(self, topic: str, qos: int = 0, *,
                 properties: Optional[_mqtt.MqttProperties] = None) -> None:
        """Subscribe to ``topic`` (``+`` and ``#`` wildcards allowed) with maximum ``qos``."""
        _mqtt.subscribe(self, topic, qos, False, properties)

    def mqtt_unsub(self, topic: str, *,
                   properties: Optional[_mqtt.MqttProperties] = None) -> None:
        """Unsubscribe from ``topic`` (the filter given to mqtt_sub)."""
        _mqtt.subscribe(self, topic, 0, True, properties)

    def mqtt_ping(self) -> None:
        """Send PINGREQ (the broker answers PINGRESP, an MG_EV_MQTT_CMD)."""
        _mqtt.send_header(self, _mqtt.MQTT_CMD_PINGREQ, 0, 0)

    def mqtt_pong(self) -> None:
        """Send PINGRESP (a broker's answer to PINGREQ)."""
        _mqtt.send_header(self, _mqtt.MQTT_CMD_PINGRESP, 0, 0)

    def mqtt_disconnect(self, *, properties: Optional[_mqtt.MqttProperties] = None) -> None:
        """Send DISCONNECT: the broker drops the will and closes the connection."""
        _mqtt.disconnect(self, properties)

    def mqtt_send_header(self, cmd: int, flags: int, length: int) -> None:
        """Send a packet's fixed header (``MQTT_CMD_*``, low flag bits, remaining length).

        Follow it with ``send()`` of exactly ``length`` bytes.
        """
        _mqtt.send_header(self, cmd, flags, length)

    def mqtt_connack(self, return_code: int = 0, session_present: bool = False) -> None:
        """Broker side: answer CONNECT (0 accepts; MQTT 3.1.1 codes 1-5, MQTT 5 0x80+)."""
        _mqtt.connack(self, return_code, session_present)

    def mqtt_suback(self, packet_id: int, codes: Sequence[int]) -> None:
        """Broker side: answer SUBSCRIBE ``packet_id`` with one granted QoS per filter
        (0x80 refuses one)."""
        _mqtt.suback(self, packet_id, codes)

    def mqtt_unsuback(self, packet_id: int, count: int = 1) -> None:
        """Broker side: answer UNSUBSCRIBE ``packet_id`` (``count``: its filters)."""
        _mqtt.unsuback(self, packet_id, count)

    # -- name resolution and time ------------------------------------------------------

    def resolve(self, url: str) -> None:
        """Look up ``url``'s host and (re)connect this client connection there.

        MG_EV_RESOLVE follows (``remote_addr`` then holds the address found), then
        MG_EV_CONNECT; a failed lookup gives MG_EV_ERROR and closes the connection. A
        socket the connection already has is closed first, and its buffers emptied.
        """
        dns.resolve(self, url)

    def resolve_cancel(self) -> None:
        """Stop the lookup in progress: no MG_EV_RESOLVE, MG_EV_ERROR or timeout follows.

        The connection stays open, without a socket, until closed or resolved again.
        """
        dns.resolve_cancel(self)

    def sntp_request(self) -> bool:
        """Ask for the time again on a connection made by ``Manager.sntp_connect``.

        For a lost datagram: ``sntp_connect`` already sent one request. A reply to this
        request or the previous one is accepted. Returns False when none was sent: the
        address is still being looked up (one goes out then), or the answer came.
        """
        return sntp.request(self)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close now: Mongoose frees the connection at the next poll (MG_EV_CLOSE)."""
        c = self._c
        if c is not None:
            lib.pymg_conn_close(c)
            self._work_queued()

    def drain(self) -> None:
        """Close gracefully: stop reading, send what is buffered, then close."""
        lib.pymg_conn_drain(self._live())
        self._work_queued()

    def __repr__(self) -> str:
        if self._c is None:
            return f"<Connection id={self._id} closed>"
        flags = self._flags()
        kind = ("listening" if flags & _F_LISTENING else
                "client" if flags & _F_CLIENT else "accepted")
        proto = "udp" if flags & _F_UDP else "tcp"
        if flags & _F_WEBSOCKET:
            proto = "ws"
        local = self.local_addr
        remote = self.remote_addr
        where = f"{local[0]}:{local[1]}" if local else "?"
        if remote and remote[1]:
            where += f" <-> {remote[0]}:{remote[1]}"
        state = " closing" if flags & _F_CLOSING else ""
        return f"<Connection id={self._id} {kind} {proto} {where}{state}>"
