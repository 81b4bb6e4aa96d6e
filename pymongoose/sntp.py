"""SNTP client: ask a time server for the time; it arrives as ``MG_EV_SNTP_TIME``.

The protocol runs in C (csrc/sntp.c): one request over UDP, the reply checked and
corrected for half the round trip, then ``MG_EV_SNTP_TIME`` with the time in
milliseconds since the epoch (an int) and the connection closes. A malformed reply,
or none within the timeout, raises ``MG_EV_ERROR`` with a message saying which.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional

from ._ffi import lib
from .errors import ConnectionClosedError

if TYPE_CHECKING:
    from .connection import Connection, EventHandler
    from .manager import Manager

__all__ = ["DEFAULT_TIMEOUT_MS", "SNTP_PORT", "connect", "request"]

#: NTP's well-known port, used when the URL names none.
SNTP_PORT = 123
#: How long to wait for a reply after each request, as Mongoose does.
DEFAULT_TIMEOUT_MS = 3000


def sntp_url(url: object) -> str:
    """``url`` checked to be ``udp://host[:port]`` (or ``sntp://host[:port]``, the same),
    with port 123 when it has none."""
    if not isinstance(url, str):
        raise TypeError(f"SNTP server URL must be str, not {type(url).__name__}")
    if url.lower().startswith("sntp://"):
        url = "udp://" + url[7:]
    if not url.lower().startswith("udp://"):
        raise ValueError(f"SNTP server URL {url!r} must start with udp:// "
                         "(e.g. udp://time.google.com:123)")
    host_port = url[6:].split("/", 1)[0]
    if ":" not in host_port.rsplit("]", 1)[-1]:
        url = f"udp://{host_port}:{SNTP_PORT}"
    return url


def connect(manager: Manager, url: str, handler: Optional[EventHandler],
            timeout_ms: int, events: Optional[Iterable[int]]) -> Connection:
    """Open an SNTP client connection and send its first request (Manager.sntp_connect)."""
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool):
        raise TypeError(f"timeout_ms must be int, not {type(timeout_ms).__name__}")
    if not 0 < timeout_ms < 2**31:
        raise ValueError(f"timeout_ms must be a positive number of milliseconds, "
                         f"not {timeout_ms}")
    conn = manager.connect(sntp_url(url), handler, http=False, events=events)
    lib.pymg_sntp_attach(conn._live(), timeout_ms)
    conn._work_queued()
    return conn


def request(conn: Connection) -> bool:
    """Send another request on an SNTP connection (Connection.sntp_request)."""
    c = conn._c
    if c is None:
        raise ConnectionClosedError(f"connection {conn.id} is closed")
    queued = lib.pymg_sntp_request(c)
    if queued < 0:
        raise ValueError("sntp_request() needs a connection made by Manager.sntp_connect()")
    if queued:
        conn._work_queued()
    return bool(queued)
