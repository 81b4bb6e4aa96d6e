"""Request targets (RFC 9112 3.2) as the app servers hand them on: the path and query
of an absolute-form target, and no ``#fragment`` in either.

The C head check (csrc/conn_limits.c) has already refused every target that is none of
origin-form, absolute-form (``scheme://authority...``), authority-form (CONNECT) and
asterisk-form (OPTIONS); these helpers only take apart what it let through.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["split_fragment", "split_target"]


def split_target(target: bytes) -> tuple[bytes, Optional[str]]:
    """The path of an absolute-form target (``http://host/p`` gives ``/p``) and its
    ``host[:port]``, which replaces Host (RFC 9112 3.2.2); any other target (``*``,
    ``host:port``) as it is, without a host."""
    scheme_end = target.find(b"://")
    if scheme_end < 0 or target.startswith(b"/"):
        return target, None
    rest = target[scheme_end + 3:]
    end = len(rest)
    for sep in (b"/", b"?", b"#"):
        at = rest.find(sep)
        if 0 <= at < end:
            end = at
    host = rest[:end].rpartition(b"@")[2].decode("latin-1")
    path = rest[end:]
    return (path if path.startswith(b"/") else b"/" + path), host


def split_fragment(path: bytes, query: bytes) -> tuple[bytes, bytes]:
    """``path`` and ``query`` without the ``#fragment`` (RFC 3986 3.5) that ends one
    of them (a client should not send one; some do)."""
    at = path.find(b"#")
    if at >= 0:
        return path[:at], b""
    return path, query.partition(b"#")[0]
