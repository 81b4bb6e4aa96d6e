"""``python -m pymongoose``: serve a directory over HTTP, with a WebSocket echo at ``/ws``.

Like ``python -m http.server``, but Mongoose does the work: index.html, MIME types,
ETag / 304 and Range requests come from its static file handler. Stop it with Ctrl-C
(SIGINT) or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional

from .connection import Connection, EventHandler
from .constants import MG_EV_HTTP_MSG, MG_EV_WS_MSG, WEBSOCKET_OP_BINARY, WEBSOCKET_OP_TEXT
from .errors import ListenError
from .manager import Manager

__all__ = ["main"]

DEFAULT_LISTEN = "http://127.0.0.1:8000"
WS_PATH = "/ws"

# Exit status for bad command-line input, as argparse uses.
_USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``python -m pymongoose``."""
    parser = argparse.ArgumentParser(
        prog="python -m pymongoose",
        description=(
            "Serve the files under a directory over HTTP with Mongoose, and echo "
            f"WebSocket messages sent to {WS_PATH}. Ctrl-C or SIGTERM stops the server."
        ),
    )
    parser.add_argument(
        "--listen", metavar="URL", default=DEFAULT_LISTEN,
        help=f"address to listen on (default: {DEFAULT_LISTEN}); port 0 picks a free port",
    )
    parser.add_argument(
        "--root", metavar="DIR", default=".",
        help="directory to serve (default: the current directory)",
    )
    return parser


def make_handler(root_dir: str) -> EventHandler:
    """An event handler that serves ``root_dir`` and echoes WebSocket messages on /ws."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == WS_PATH:
                conn.ws_upgrade(data)
            else:
                conn.serve_dir(data, root_dir)
        elif ev == MG_EV_WS_MSG:
            # Echo with the message's own type: text stays text, binary stays binary.
            op = WEBSOCKET_OP_BINARY if data.op == WEBSOCKET_OP_BINARY else WEBSOCKET_OP_TEXT
            conn.ws_send(data.data, op)

    return handler


def _base_url(listener: Connection) -> str:
    addr = listener.local_addr
    if addr is None:  # only if the listener were already closed
        raise ListenError("the listener closed before it was reported")
    ip, port, is_ipv6 = addr
    host = f"[{ip}]" if is_ipv6 else ip
    return f"http://{host}:{port}"


def main(argv: Optional[list[str]] = None) -> int:
    """Run the server until SIGINT or SIGTERM; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    root_dir = os.path.abspath(args.root)
    if not os.path.isdir(root_dir):
        print(f"{parser.prog}: error: --root {args.root!r} is not a directory", file=sys.stderr)
        return _USAGE_ERROR

    manager = Manager(make_handler(root_dir), events=(MG_EV_HTTP_MSG, MG_EV_WS_MSG))
    try:
        # http=True so that a bare "127.0.0.1:8000" also speaks HTTP.
        listener = manager.listen(args.listen, http=True)
    except (ListenError, ValueError) as exc:
        manager.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"{parser.prog}: error: {reason}", file=sys.stderr)
        return _USAGE_ERROR

    url = _base_url(listener)
    ws_url = "ws" + url[len("http"):] + WS_PATH
    ready = f"Serving {root_dir} at {url}/ (WebSocket echo at {ws_url})"
    # Printed once the signal handlers are in: a signal right after it still exits 0.
    manager.run(on_ready=lambda: print(ready, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
