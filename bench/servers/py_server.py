"""The benchmark workloads served from Python, by pymongoose or by cymongoose.

Usage: ``python py_server.py IMPL MODE [ROOT_DIR]`` where IMPL is ``pymongoose`` or
``cymongoose`` and MODE one of:

- ``hello``: the quick-start handler as a user writes it, no ``events=``: cymongoose
  delivers every event, pymongoose the events the handler's source tests (inferred
  interest; a pymongoose without it delivers every event too).
- ``hello-fast``: the same handler with pymongoose's declared event interest.
- ``ws``, ``ws-fast``: WebSocket echo (binary), no ``events=`` / declared interest.
- ``static``: ``serve_dir`` of ROOT_DIR.
- ``post``: echo the request body.

The handler code is the same text for both libraries; only the import differs.
Listens on 127.0.0.1, port 0, and prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

HELLO_BODY = b'{"message":"Hello, World!"}'
JSON_HEADERS = {"Content-Type": "application/json"}
OCTET_HEADERS = {"Content-Type": "application/octet-stream"}


def make_handler(lib: Any, mode: str, root_dir: str) -> Any:
    """The handler for ``mode``, written against the library module ``lib``."""
    http_msg, ws_msg = lib.MG_EV_HTTP_MSG, lib.MG_EV_WS_MSG
    binary = lib.WEBSOCKET_OP_BINARY
    base = mode.removesuffix("-fast")

    if base == "hello":
        def handler(conn: Any, ev: int, data: Any) -> None:
            if ev == http_msg:
                conn.reply(200, HELLO_BODY, JSON_HEADERS)
    elif base == "ws":
        def handler(conn: Any, ev: int, data: Any) -> None:
            if ev == http_msg:
                conn.ws_upgrade(data)
            elif ev == ws_msg:
                conn.ws_send(data.data, binary)
    elif base == "static":
        def handler(conn: Any, ev: int, data: Any) -> None:
            if ev == http_msg:
                conn.serve_dir(data, root_dir)
    elif base == "post":
        def handler(conn: Any, ev: int, data: Any) -> None:
            if ev == http_msg:
                conn.reply(200, data.body_bytes, OCTET_HEADERS)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return handler


def main(argv: list[str]) -> int:
    impl, mode = argv[1], argv[2]
    root_dir = argv[3] if len(argv) > 3 else "."
    lib = importlib.import_module(impl)
    handler = make_handler(lib, mode, root_dir)
    if mode.endswith("-fast"):
        if impl != "pymongoose":
            raise SystemExit("the -fast modes are pymongoose's declared-interest API")
        mgr = lib.Manager(handler, events=(lib.MG_EV_HTTP_MSG, lib.MG_EV_WS_MSG))
    else:
        mgr = lib.Manager(handler)
    listener = mgr.listen("http://127.0.0.1:0")
    print(f"PORT {listener.local_addr[1]}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop:
        mgr.poll(100)
    mgr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
