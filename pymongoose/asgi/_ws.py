"""One WebSocket session of the ASGI server: handshake, messages, close codes."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Optional

from .. import ws_deflate
from .._ffi import lib
from ..connection import format_headers
from ..constants import WEBSOCKET_OP_BINARY, WEBSOCKET_OP_CLOSE, WEBSOCKET_OP_TEXT
from ._scope import ClientDisconnected, Message, ProtocolError, log

if TYPE_CHECKING:
    from ..connection import Connection
    from ..ws_deflate import PerMessageDeflate

__all__ = ["WebSocketCycle"]

_CONNECTING, _OPEN, _CLOSED = 0, 1, 2
_FORBIDDEN = (b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
_SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n"
                 b"connection: close\r\n\r\n")
#: Close code when the connection ended without a close frame (RFC 6455, 7.1.5).
ABNORMAL_CLOSURE = 1006


class WebSocketCycle:
    """The receive/send pair the application gets for one WebSocket connection."""

    __slots__ = ("_conn", "_inbox", "_key", "_loop", "_state", "_waiter", "close_code",
                 "close_reason", "compression", "disconnected", "request_line", "scope")

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Connection, scope: Any,
                 key: bytes) -> None:
        self._loop = loop
        self._conn = conn
        self.scope = scope
        self._key = key
        self._state = _CONNECTING
        self._inbox: deque[Message] = deque([{"type": "websocket.connect"}])
        self._waiter: Optional[asyncio.Future[None]] = None
        #: True once the peer closed or vanished (a disconnect message is queued).
        self.disconnected = False
        self.close_code = ABNORMAL_CLOSURE
        self.close_reason = ""
        self.request_line = ""
        #: permessage-deflate: None (off) or the options to answer an offer with.
        self.compression: Optional[PerMessageDeflate] = None

    # -- what the connection tells us ---------------------------------------------------

    def _push(self, message: Message) -> None:
        self._inbox.append(message)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_message(self, data: bytes, is_text: bool) -> None:
        """A complete text or binary message arrived."""
        if self.disconnected:
            return
        if not is_text:
            self._push({"type": "websocket.receive", "bytes": data})
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._close(1007, "invalid UTF-8 in a text message")  # RFC 6455, 8.1
            self.on_close_frame(1007, "")
            return
        self._push({"type": "websocket.receive", "text": text})

    def on_close_frame(self, code: int, reason: str) -> None:
        """The peer sent a close frame (Mongoose echoes it and closes)."""
        if not self.disconnected:
            self.disconnected = True
            self.close_code, self.close_reason = code, reason
            self._state = _CLOSED
            self._push({"type": "websocket.disconnect", "code": code, "reason": reason})

    def on_disconnect(self) -> None:
        """The connection closed; without a close frame that is code 1006."""
        self.on_close_frame(ABNORMAL_CLOSURE, "")

    # -- the application's side ---------------------------------------------------------

    async def receive(self) -> Message:
        """websocket.connect, then websocket.receive messages, then websocket.disconnect."""
        inbox = self._inbox
        while not inbox:
            if self.disconnected:  # already told; say it again
                return {"type": "websocket.disconnect", "code": self.close_code,
                        "reason": self.close_reason}
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = self._loop.create_future()
            await waiter
        return inbox.popleft()

    async def send(self, message: Message) -> None:
        """Take one websocket.* message."""
        mtype = message["type"]
        state = self._state
        conn = self._conn
        if mtype == "websocket.send":
            if state != _OPEN:
                if state == _CONNECTING:
                    raise ProtocolError("websocket.send before websocket.accept")
                raise ClientDisconnected("the WebSocket is closed")
            data = message.get("bytes")
            if data is not None:
                conn.ws_send(data, WEBSOCKET_OP_BINARY)
            else:
                text = message.get("text")
                if not isinstance(text, str):
                    raise ProtocolError("websocket.send needs bytes or text")
                conn.ws_send(text, WEBSOCKET_OP_TEXT)
        elif mtype == "websocket.accept":
            if state != _CONNECTING:
                raise ProtocolError("websocket.accept sent twice or after a close")
            self._accept(message)
        elif mtype == "websocket.close":
            if state == _CONNECTING:
                self._reply_and_close(_FORBIDDEN)
            elif state == _OPEN:
                code = message.get("code", 1000)
                reason = message.get("reason") or ""
                if type(code) is not int or not 1000 <= code <= 4999:
                    raise ProtocolError(f"websocket.close: invalid code {code!r}")
                self._close(code, reason)
            # after the peer closed, closing again is a no-op
        else:
            raise ProtocolError(f"unexpected ASGI message {mtype!r} in a WebSocket session")

    def _accept(self, message: Message) -> None:
        headers = []
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", str(subprotocol)))
        try:
            for name, value in message.get("headers") or ():
                headers.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
            extra = format_headers(headers)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"websocket.accept: bad headers: {exc}") from None
        c = self._conn._c
        self._state = _OPEN
        if c is None or self.disconnected:
            return
        if self.compression is not None:
            extra += self._deflate(headers)
        lib.pymg_asgi_ws_accept(c, self._key, len(self._key), extra)
        self._conn._work_queued()

    def _deflate(self, headers: list[tuple[str, str]]) -> bytes:
        """Agree on permessage-deflate when the client offered it and the application
        answered no extension itself: the response header line, b"" for none."""
        opts = self.compression
        offers = ws_deflate.extension_values(self.scope["headers"])
        if opts is None or not offers or ws_deflate.extension_values(headers):
            return b""
        agreed = ws_deflate.server_agree(offers, opts)
        if agreed is None:
            return b""
        ws_deflate.enable(self._conn, agreed, opts)
        return f"Sec-WebSocket-Extensions: {agreed.response}\r\n".encode("latin-1")

    def _close(self, code: int, reason: str) -> None:
        self._state = _CLOSED
        conn = self._conn
        if conn.is_closed:
            return
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
        conn.ws_send(payload, WEBSOCKET_OP_CLOSE)
        conn.drain()

    def _reply_and_close(self, response: bytes) -> None:
        self._state = _CLOSED
        c = self._conn._c
        if c is not None and not self.disconnected:
            lib.pymg_asgi_send(c, response, len(response), 1)
            self._conn.drain()

    def going_away(self) -> None:
        """The server is shutting down: close an open session with 1001."""
        if self._state == _OPEN:
            self._close(1001, "server shutting down")
        elif self._state == _CONNECTING:
            self._reply_and_close(_SERVER_ERROR)

    def finish(self, exc: Optional[BaseException]) -> None:
        """The application returned or raised: close what it left open, log once."""
        state = self._state
        if exc is not None:
            # Frameworks raise their "client disconnected" exception out of the app when
            # the client closed first: worth a line, not an error.
            level = logging.INFO if self.disconnected else logging.ERROR
            log.log(level, "ASGI application raised in WebSocket session %s%s",
                    self.request_line, " after the client closed" if self.disconnected
                    else "", exc_info=exc)
        if state == _CONNECTING:
            if exc is None:
                log.error("ASGI application returned without accepting or closing the "
                          "WebSocket (%s)", self.request_line)
            self._reply_and_close(_SERVER_ERROR)
        elif state == _OPEN:
            self._close(1011 if exc is not None else 1000, "")
