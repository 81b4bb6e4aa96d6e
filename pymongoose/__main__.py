"""``python -m pymongoose``: serve a directory over HTTP, with a WebSocket echo at ``/ws``.

Like ``python -m http.server``, but Mongoose does the work: index.html, folder
listings (``--no-list`` turns them off; dotfiles stay hidden), MIME types, ETag / 304 and
Range requests come from its static file handler. Stop it with Ctrl-C (SIGINT) or SIGTERM.

``--wsgi module:app`` serves a WSGI application instead (``--asgi module:app`` an ASGI
one), with ``--workers`` processes, ``--threads`` per process (WSGI), ``--root`` static
files in front, and ``--access-log``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable, Optional

from ._startup import startup_line
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
        "--root", metavar="DIR", default=None,
        help="directory to serve (default: the current directory; with --wsgi or --asgi, "
             "static files served before the app, none by default)",
    )
    app = parser.add_mutually_exclusive_group()
    app.add_argument("--wsgi", metavar="MODULE:APP",
                     help="serve this WSGI application (e.g. myproject.wsgi:application)")
    app.add_argument("--asgi", metavar="MODULE:APP",
                     help="serve this ASGI application (e.g. myapp:app)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="worker processes for --wsgi/--asgi (default: 1)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads running the WSGI app in each worker (default: 8)")
    parser.add_argument("--no-list", dest="list_dirs", action="store_false",
                        help="answer 403 for a folder without index.html instead of listing "
                             "it (static files; dotfiles are never listed nor served)")
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per request (logger pymongoose.access, stderr)")
    return parser


class AppImportError(Exception):
    """An import path like ``module:app`` that does not lead to a callable."""


def import_app(path: str) -> Callable[..., Any]:
    """The object ``module:attr`` names (``attr`` may be dotted; default ``app``, then
    ``application``). The current directory is importable, as with gunicorn."""
    module_name, _, attr = path.partition(":")
    if not module_name or (path.count(":") > 1):
        raise AppImportError(f"{path!r} is not an import path like 'package.module:app'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppImportError(f"cannot import module {module_name!r}: {exc}") from None
    candidates = [attr] if attr else ["app", "application"]
    for name in candidates:
        obj: Any = module
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if not callable(obj):
            raise AppImportError(f"{module_name}:{name} is a {type(obj).__name__}, "
                                 "not a callable application")
        return obj  # type: ignore[no-any-return]
    raise AppImportError(f"module {module_name!r} has no attribute "
                         f"{' or '.join(repr(c) for c in candidates)}")


def make_handler(root_dir: str, list_dirs: bool = True) -> EventHandler:
    """An event handler that serves ``root_dir`` and echoes WebSocket messages on /ws;
    ``list_dirs``: a folder without index.html is listed (hidden files stay hidden)."""

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == WS_PATH:
                conn.ws_upgrade(data)
            else:
                conn.serve_dir(data, root_dir, list_dirs=list_dirs)
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


def _serve_app(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """--wsgi or --asgi: import the app, then hand it to the matching server."""
    def fail(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return _USAGE_ERROR

    if args.workers < 1:
        return fail("--workers must be at least 1")
    if args.root is not None and not os.path.isdir(args.root):
        return fail(f"--root {args.root!r} is not a directory")
    if args.asgi is not None:
        if args.threads is not None:
            return fail("--threads applies to --wsgi only")
        try:
            from .asgi import serve as serve_asgi  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            return fail(f"--asgi needs pymongoose.asgi, which cannot be imported here: {exc}")
        try:
            app = import_app(args.asgi)
        except AppImportError as exc:
            return fail(f"--asgi {exc}")
        serve: Callable[..., Any] = serve_asgi
        kwargs: dict[str, Any] = {}
    else:
        from .wsgi import serve as serve_wsgi

        try:
            app = import_app(args.wsgi)
        except AppImportError as exc:
            return fail(f"--wsgi {exc}")
        if args.threads is not None and args.threads < 1:
            return fail("--threads must be at least 1")
        serve = serve_wsgi
        kwargs = {"threads": args.threads if args.threads is not None else 8}
    try:
        result = serve(app, args.listen, workers=args.workers, root=args.root,
                       access_log=args.access_log, **kwargs)
    except (ListenError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return fail(str(reason))
    return int(result or 0)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the server until SIGINT or SIGTERM; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.wsgi is not None or args.asgi is not None:
        return _serve_app(parser, args)
    if args.root is None:
        args.root = "."
    root_dir = os.path.abspath(args.root)
    if not os.path.isdir(root_dir):
        print(f"{parser.prog}: error: --root {args.root!r} is not a directory", file=sys.stderr)
        return _USAGE_ERROR

    manager = Manager(make_handler(root_dir, args.list_dirs), events=(MG_EV_HTTP_MSG, MG_EV_WS_MSG))
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
    ready = startup_line(f"files from {root_dir}", url, 1, f"WebSocket echo at {ws_url}")
    # Printed once the signal handlers are in: a signal right after it still exits 0.
    manager.run(on_ready=lambda: print(ready, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
