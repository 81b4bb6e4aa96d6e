"""ASGI scopes from a raw HTTP request head, and the types shared by the ASGI modules."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable, Optional
from urllib.parse import unquote

from .._http_target import split_fragment, split_target

__all__ = [
    "ASGI_INFO",
    "CONNECTION",
    "CONTENT_LENGTH",
    "TRANSFER_ENCODING",
    "UPGRADE",
    "WS_KEY",
    "WS_PROTOCOL",
    "ASGIApp",
    "ClientDisconnected",
    "Message",
    "ProtocolError",
    "Receive",
    "Scope",
    "Send",
    "log",
    "parse_head",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3.0 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The ``asgi`` key of every scope (shared: applications only read it).
ASGI_INFO = {"version": "3.0", "spec_version": "2.4"}

#: Application errors and protocol violations, each reported once.
log = logging.getLogger("pymongoose.asgi")


class ProtocolError(RuntimeError):
    """The application sent a message the ASGI protocol does not allow at that point."""


class ClientDisconnected(OSError):
    """The client has gone: the message could not be sent."""


#: Headers the server itself acts on, by the slot parse_head reports them in.
_NOTED = {b"connection": 0, b"content-length": 1, b"transfer-encoding": 2, b"upgrade": 3,
          b"sec-websocket-key": 4, b"sec-websocket-protocol": 5}

Head = tuple[str, bytes, bytes, str, str, list[tuple[bytes, bytes]], list[Optional[bytes]]]


def parse_head(head: bytes) -> Head:
    """``(method, raw_path, query_string, path, http_version, headers, noted)`` of a
    request head.

    Mongoose has already validated the request line and headers. Header names are
    lower-cased and values stripped, as ASGI wants them; ``path`` is percent-decoded.
    ``noted`` holds the first value of each header in ``_NOTED`` (None when absent).
    """
    lines = head.split(b"\r\n")
    method, target, proto = lines[0].split(b" ", 2)
    headers = []
    noted: list[Optional[bytes]] = [None] * 6
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            headers.append((name, value))
            slot = _NOTED.get(name)
            if slot is not None and noted[slot] is None:
                noted[slot] = value
    if not target.startswith(b"/"):
        # absolute-form ("http://host/path?q"): its authority replaces Host (RFC 9112
        # 3.2.2); asterisk-form ("*") and authority-form stay as they are
        target, authority = split_target(target)
        if authority is not None:
            headers = [(b"host", authority.encode("latin-1")) if name == b"host"
                       else (name, value) for name, value in headers]
    raw_path, _, query = target.partition(b"?")
    if b"#" in target:
        raw_path, query = split_fragment(raw_path, query)
    path = raw_path.decode("utf-8", "surrogateescape")
    if "%" in path:
        path = unquote(path, errors="surrogateescape")
    version = proto.strip()[5:].decode("latin-1") or "1.1"
    return method.decode("latin-1"), raw_path, query, path, version, headers, noted


CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE, WS_KEY, WS_PROTOCOL = range(6)
