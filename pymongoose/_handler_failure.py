"""What the client of a request gets when the handler answering it raised.

Without this, an HTTP client whose request handler raised before answering waits until
it gives up: nothing was queued, and the connection stays open for the next request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._ffi import lib

if TYPE_CHECKING:
    from .connection import Connection

_ANSWERED = lib.PYMG_CLOSING | lib.PYMG_DRAINING
_SERVER_SIDE = lib.PYMG_ACCEPTED
_BODY = b"Internal Server Error\n"
_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}


def answer_failed_request(conn: Connection) -> None:
    """After a server's MG_EV_HTTP_MSG handler raised: answer ``500 Internal Server
    Error`` and close, or, when the handler had begun a response (or upgraded to
    WebSocket), close once what it queued is sent: the client must not wait for what
    will never come. A response cut short shows as one (no final chunk, or fewer
    bytes than its Content-Length)."""
    c = conn._c
    if c is None:
        return
    flags = lib.pymg_conn_flags(c)
    if not flags & _SERVER_SIDE or flags & _ANSWERED:
        return  # a client's response, or the handler closed the connection itself
    if lib.pymg_http_answer_started(c):
        conn.drain()
        return
    try:
        conn.reply(500, _BODY, _HEADERS)
    except Exception:  # out of memory: closing is all that is left
        conn.close()
        return
    conn.drain()
