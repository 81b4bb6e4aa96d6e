"""``wsgi.file_wrapper``, and cymongoose's module-level WSGI environ builder.

``WSGIServer`` builds its environ itself (streamed ``wsgi.input``, per-connection peer
keys); this is the stand-alone form cymongoose's ``wsgi._build_environ`` offered: one
request whose body is already whole, read through ``HttpMessage``'s public accessors.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from typing import IO, Any, Protocol
from urllib.parse import unquote


class FileWrapper:
    """``wsgi.file_wrapper``: iterate a file-like object in blocks, closing it after."""

    def __init__(self, filelike: IO[bytes], blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block


class _Request(Protocol):
    method: str
    uri: str
    query: str
    proto: str
    body_bytes: bytes

    def header(self, name: str, default: Any = None) -> Any: ...

    def headers(self) -> list[tuple[str, str]]: ...


class _Peer(Protocol):
    is_tls: bool
    remote_addr: Any


def build_environ(hm: _Request, conn: _Peer, server_name: str,
                  server_port: int) -> dict[str, Any]:
    """A PEP 3333 environ for ``hm`` received on ``conn`` (body in ``wsgi.input``)."""
    uri = hm.uri or "/"
    path, sep, query = uri.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": hm.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": query if sep else (hm.query or ""),
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": hm.proto or "HTTP/1.1",
        "SERVER_SOFTWARE": "pymongoose",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if conn.is_tls else "http",
        "wsgi.input": io.BytesIO(hm.body_bytes or b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    remote = conn.remote_addr
    if remote:
        environ["REMOTE_ADDR"] = remote[0]
        environ["REMOTE_PORT"] = str(remote[1])
    for name, value in hm.headers():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        elif "_" not in name:  # Foo_Bar would pose as Foo-Bar: dropped, as WSGIServer does
            key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
