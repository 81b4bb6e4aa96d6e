"""One HTTP request/response cycle of the ASGI server: receive(), send() and framing.

The response head and body are framed here and handed to C in one call per ASGI
message; the last one also tells Mongoose the response is complete, so it goes on
to the connection's next request.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Optional

from .._ffi import lib
from .._http_date import http_date
from ..constants import MG_EV_WRITE
from ._scope import ClientDisconnected, Message, ProtocolError, log

if TYPE_CHECKING:
    from ..connection import Connection

__all__ = ["HttpCycle", "want_writes"]

_asgi_send = lib.pymg_asgi_send
access_log = logging.getLogger("pymongoose.access")

# States of a cycle.
_START, _FIRST_BODY, _STREAMING, _DONE = 0, 1, 2, 3

#: Above this many bytes waiting in the send buffer, send() waits for it to drain.
HIGH_WATER = 1 << 20

_STATUS_LINES: dict[int, bytes] = {}


def want_writes(conn: Connection, on: bool) -> None:
    """Route MG_EV_WRITE of ``conn`` to the server (on), or stop (off): a send() waits
    for the buffer to drain in between. ``conn.userdata`` is the server's peer record,
    whose ``events`` are the connection's interest without MG_EV_WRITE."""
    handler = conn.handler
    peer = conn.userdata
    if handler is not None and peer is not None and not conn.is_closed:
        events = peer.events
        conn.set_handler(handler, events=(*events, MG_EV_WRITE) if on else events)


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if type(status) is not int or not 100 <= status <= 999:
            raise ProtocolError(f"http.response.start: status must be an int between 100 "
                                f"and 999, not {status!r}")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("ascii"))
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


_date_line = b""
_date_value = ""


def _date_header() -> bytes:
    """``date: <IMF-fixdate>\r\n``, encoded again only when the second changes."""
    global _date_line, _date_value
    value = http_date()
    if value is not _date_value:
        _date_value = value
        _date_line = b"date: " + value.encode("ascii") + b"\r\n"
    return _date_line


class HttpCycle:
    """The receive/send pair the application gets for one HTTP request."""

    __slots__ = (
        "_body_done", "_body_given", "_bytes_sent", "_chunked", "_conn", "_drained",
        "_head_only", "_keep_alive", "_loop", "_paused", "_pending", "_pending_len",
        "_send_body", "_state", "_status", "_waiter", "_wire_headers",
        "disconnected", "log_access", "scope", "task",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Connection, scope: Any,
                 body_follows: bool, keep_alive: bool) -> None:
        self._loop = loop
        self._conn = conn
        self.scope = scope
        # The request body: pieces received and not yet given to the app; whether the
        # last piece arrived; whether the app got its last http.request.
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._body_done = not body_follows
        self._body_given = False
        self._paused = False
        self._keep_alive = keep_alive
        self._head_only = scope["method"] == "HEAD"
        self._state = _START
        self._status = 0
        self._wire_headers: Any = None
        self._chunked = False
        self._send_body = True
        self._bytes_sent = 0
        self._waiter: Optional[asyncio.Future[None]] = None
        self._drained: Optional[asyncio.Future[None]] = None
        #: True once the client has gone.
        self.disconnected = False
        #: Whether the response goes to the access log.
        self.log_access = False
        #: The task running the application for this request (set by the server).
        self.task: Optional[asyncio.Task[None]] = None

    @property
    def request_line(self) -> str:
        """``GET /path?query HTTP/1.1``, for the logs."""
        scope = self.scope
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        return f"{scope['method']} {target} HTTP/{scope['http_version']}"

    # -- what the connection tells us ---------------------------------------------------

    def on_body(self, piece: bytes) -> None:
        """A piece of the request body arrived (pymongoose streams bodies, never buffers
        them whole): keep it for receive(), and stop reading while too much waits."""
        if self._state == _DONE:
            return  # answered already: the rest of the body is read and dropped
        self._pending.append(piece)
        self._pending_len += len(piece)
        if self._pending_len > HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def on_body_end(self) -> None:
        """The request body is complete."""
        self._body_done = True
        self._wake()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if not self._conn.is_closed:
                self._conn.resume_reading()

    def on_disconnect(self) -> None:
        """The connection closed: wake receive() and any send() waiting for the buffer."""
        self.disconnected = True
        self._wake()
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def on_writable(self) -> bool:
        """The send buffer shrank; returns True once nobody needs to hear about it again."""
        drained = self._drained
        if drained is None or drained.done():
            return True
        if self._conn.send_len <= HIGH_WATER // 2:
            drained.set_result(None)
            return True
        return False

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def started(self) -> bool:
        """True once the application sent http.response.start."""
        return self._state != _START

    @property
    def complete(self) -> bool:
        """True once the whole response was handed to the connection."""
        return self._state == _DONE

    # -- the application's side ---------------------------------------------------------

    async def receive(self) -> Message:
        """The request body in http.request messages (what arrived since the last call,
        waiting for more when nothing did), then http.disconnect once the client has
        gone or the response is complete."""
        while True:
            pending = self._pending
            if pending or (self._body_done and not self._body_given):
                if not pending:
                    body = b""
                elif len(pending) == 1:
                    body = pending[0]
                else:
                    body = b"".join(pending)
                pending.clear()
                self._pending_len = 0
                self._resume()
                more = not self._body_done
                self._body_given = not more
                return {"type": "http.request", "body": body, "more_body": more}
            if self.disconnected or (self._state == _DONE and self._body_given):
                return {"type": "http.disconnect"}
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = self._loop.create_future()
            await waiter

    async def send(self, message: Message) -> None:
        """Take one http.response.* message; sends what it can at once."""
        mtype = message["type"]
        state = self._state
        if mtype == "http.response.body" and (state in (_FIRST_BODY, _STREAMING)):
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            if type(body) is not bytes:
                if not isinstance(body, (bytearray, memoryview)):
                    raise ProtocolError("http.response.body: body must be bytes, not "
                                        f"{type(body).__name__}")
                body = bytes(body)
            if state == _FIRST_BODY:
                data = self._frame_head(body, more)
            else:
                data = self._frame_body(body, more)
            await self._write(data, not more)
        elif mtype == "http.response.start" and state == _START:
            status = self._status = message["status"]
            if status not in _STATUS_LINES:
                _status_line(status)  # checks it
            self._wire_headers = message.get("headers", ())
            self._state = _FIRST_BODY
        elif state == _DONE and mtype == "http.response.body":
            raise ProtocolError("http.response.body sent after the response was complete")
        elif state == _START and mtype == "http.response.body":
            raise ProtocolError("http.response.body sent before http.response.start")
        else:
            raise ProtocolError(f"unexpected ASGI message {mtype!r} in an HTTP cycle")

    # -- framing ------------------------------------------------------------------------

    def _frame_head(self, body: bytes, more: bool) -> bytes:
        status = self._status
        parts = [_status_line(status)]
        framed = chunked = dated = told = False
        count = 0
        try:
            for name, value in self._wire_headers:
                lname = name.lower()
                if lname == b"content-length":
                    framed = True
                elif lname == b"transfer-encoding":
                    framed = True
                    chunked = b"chunked" in value.lower()
                elif lname == b"connection":
                    told = True
                    if value.lower() == b"close":
                        self._keep_alive = False
                elif lname == b"date":
                    dated = True
                parts += (name, b": ", value, b"\r\n")
                count += 1
            head = b"".join(parts)
        except (TypeError, ValueError, AttributeError):
            raise ProtocolError("http.response.start: headers must be an iterable of "
                                "(bytes, bytes) pairs") from None
        if head.count(b"\n") != count + 1 or head.count(b"\r") != count + 1:
            raise ProtocolError("http.response.start: a header name or value contains a "
                                "line break")
        if not dated:
            head += _date_header()
        bodiless = status < 200 or status == 204 or status == 304
        if bodiless or self._head_only:
            self._send_body = False
            if not framed and not bodiless and not more:
                head += b"content-length: %d\r\n" % len(body)
        elif not framed:
            if not more:
                head += b"content-length: %d\r\n" % len(body)
            elif self.scope["http_version"] == "1.1":
                head += b"transfer-encoding: chunked\r\n"
                chunked = True
            else:
                self._keep_alive = False  # HTTP/1.0: the end of the body is the close
        if not told:
            # Say what HTTP/1.0 would not assume, and when this connection ends.
            if not self._keep_alive:
                head += b"connection: close\r\n"
            elif self.scope["http_version"] == "1.0":
                head += b"connection: keep-alive\r\n"
        self._chunked = chunked
        self._state = _STREAMING
        return head + b"\r\n" + self._frame_body(body, more)

    def _frame_body(self, body: bytes, more: bool) -> bytes:
        if not self._send_body:
            return b""
        self._bytes_sent += len(body)
        if not self._chunked:
            return body
        data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        return data if more else data + b"0\r\n\r\n"

    async def _write(self, data: bytes, end: bool) -> None:
        conn = self._conn
        if end:
            self._state = _DONE
        c = conn._c
        if c is None or self.disconnected:
            if end:
                self._finish()
            return  # ASGI: sending to a client that has gone is not the app's error
        done = _asgi_send(c, data, len(data), 1 if end else 0)
        if done != 2:  # 2: all written and no request waiting: no poll needed
            if not done:
                conn.close()
                raise ClientDisconnected("cannot grow the send buffer; connection closed")
            wake = conn._manager._on_work_queued
            if wake is not None:
                wake()
        if end:
            self._finish()
        elif int(c.send.len) > HIGH_WATER:
            await self._wait_drained()

    async def _wait_drained(self) -> None:
        self._drained = self._loop.create_future()
        want_writes(self._conn, True)
        try:
            await self._drained
        finally:
            self._drained = None
            if not self._conn.is_closed:
                want_writes(self._conn, False)

    def _finish(self) -> None:
        """The response is complete: close if the request asked for it, log, wake."""
        if self._pending:
            self._pending.clear()
        if self._paused:
            self._resume()  # an unread rest of the body is read and dropped
        if not self._keep_alive and not self._conn.is_closed:
            self._conn.drain()
        if self.log_access and access_log.isEnabledFor(logging.INFO):
            client = self.scope.get("client") or ("-", 0)
            access_log.info('%s:%d - "%s" %d %d', client[0], client[1], self.request_line,
                            self._status, self._bytes_sent)
        if self._waiter is not None:
            self._wake()

    def abort(self) -> None:
        """The application failed mid-response: the client gets a closed connection."""
        self._state = _DONE
        if not self._conn.is_closed:
            # What was sent goes out, then the close: a client sees a body cut short.
            self._conn.drain()
        self._wake()

    def fail(self) -> None:
        """The application failed before starting a response: answer 500."""
        if self._state == _DONE:
            return
        if self._state != _START and self._state != _FIRST_BODY:
            self.abort()  # part of the response is on its way: only a close says "failed"
            return
        self._status = 500
        self._wire_headers = [(b"content-type", b"text/plain; charset=utf-8"),
                              (b"connection", b"close")]
        self._state = _FIRST_BODY
        data = self._frame_head(b"Internal Server Error", False)
        self._state = _DONE
        c = self._conn._c
        if c is not None and not self.disconnected:
            _asgi_send(c, data, len(data), 1)
            self._conn._work_queued()
        self._finish()


def report(cycle: HttpCycle, exc: Optional[BaseException]) -> None:
    """The application returned (``exc`` None) or raised: finish the response, log once."""
    if exc is not None:
        log.error("ASGI application raised while handling %s", cycle.request_line,
                  exc_info=exc)
        if not cycle.complete:
            cycle.fail()
    elif not cycle.complete:
        if cycle.disconnected:
            return
        log.error("ASGI application returned without %s (%s)",
                  "completing its response" if cycle.started else "sending a response",
                  cycle.request_line)
        cycle.fail()
