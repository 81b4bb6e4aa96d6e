"""Name resolution: which DNS server Mongoose asks, how long it waits, and lookups.

Mongoose has its own asynchronous DNS client (A records, then AAAA), which asks one
server over UDP. It never reads the system's configuration, and it defaults to a
public resolver; pymongoose instead asks the first ``nameserver`` of /etc/resolv.conf
unless ``Manager(dns_server=...)`` names one. The AAAA fallback goes to the same
server (Mongoose would ask a public IPv6 resolver), and csrc/dns.c stops a Mongoose
loop that otherwise re-asks forever for a name that has no address.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Optional

from ._ffi import ffi, lib
from .errors import ConnectionClosedError

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["DEFAULT_SERVER", "DEFAULT_TIMEOUT_MS", "check_server", "system_server"]

#: Mongoose's own default server, used when /etc/resolv.conf names none.
DEFAULT_SERVER = "udp://8.8.8.8:53"
#: Mongoose's default lookup timeout.
DEFAULT_TIMEOUT_MS = 3000
RESOLV_CONF = "/etc/resolv.conf"


def _server_url(address: str, port: int = 53) -> Optional[str]:
    if "%" in address:  # a scoped IPv6 address (fe80::1%eth0): Mongoose cannot use it
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return f"udp://[{ip}]:{port}" if ip.version == 6 else f"udp://{ip}:{port}"


def system_server(path: str = RESOLV_CONF) -> Optional[str]:
    """The first usable ``nameserver`` of resolv.conf as ``udp://IP:53``, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as conf:
            for line in conf:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    url = _server_url(words[1])
                    if url is not None:
                        return url
    except OSError:
        pass
    return None


def check_server(url: object) -> str:
    """``url`` checked to be ``udp://IP:port`` (a host name would need DNS itself)."""
    if not isinstance(url, str):
        raise TypeError(f"dns_server must be str, not {type(url).__name__}")
    problem = f"dns_server {url!r} must look like udp://127.0.0.1:53 or udp://[::1]:53"
    if not url.lower().startswith("udp://"):
        raise ValueError(problem + " (Mongoose asks DNS servers over UDP only)")
    host, sep, port = url[6:].rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(problem + " (with a port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    normal = _server_url(host, int(port))
    if normal is None:
        raise ValueError(problem + " (an IP address, not a host name)")
    return normal


def check_timeout(timeout_ms: object) -> int:
    """``timeout_ms`` checked to be a positive int."""
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool):
        raise TypeError(f"dns_timeout_ms must be int, not {type(timeout_ms).__name__}")
    if not 0 < timeout_ms < 2**31:
        raise ValueError(f"dns_timeout_ms must be a positive number of milliseconds, "
                         f"not {timeout_ms}")
    return timeout_ms


def configure(mgr: Any, url: Optional[str], timeout_ms: Optional[int]) -> Any:
    """Point the manager's resolver at ``url`` (already checked) and set its timeout.

    Returns the C copy of the URL, which must live as long as the manager.
    """
    buffer = ffi.NULL if url is None else ffi.new("char[]", url.encode("ascii"))
    if not lib.pymg_dns_configure(mgr, buffer, timeout_ms or 0):
        raise RuntimeError("the DNS server cannot change while lookups are in progress")
    return buffer


def resolve(conn: Connection, url: str) -> None:
    """Look up ``url``'s host and (re)connect ``conn`` there (Connection.resolve)."""
    from .manager import _check_url

    c = conn._c
    if c is None or conn.is_closing:
        raise ConnectionClosedError(f"connection {conn.id} is closed or closing")
    _, raw = _check_url(url, "resolve")
    manager = conn._manager
    manager._depth += 1  # an IP address connects (and fires events) at once
    try:
        refused = lib.pymg_resolve(c, raw)
        queued = lib.pymg_queue_take(manager._m)
        if queued:
            manager._drain(queued)
    finally:
        manager._depth -= 1
    if refused:
        raise ValueError("resolve() works on client connections made by connect() "
                         "(not on listeners, accepted or TLS connections)")
    manager._settle()
    conn._work_queued()


def resolve_cancel(conn: Connection) -> None:
    """Forget ``conn``'s lookup in progress (Connection.resolve_cancel)."""
    c = conn._c
    if c is None:
        raise ConnectionClosedError(f"connection {conn.id} is closed")
    lib.pymg_resolve_cancel(c)
