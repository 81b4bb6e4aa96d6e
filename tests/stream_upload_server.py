"""A server that hashes streamed request bodies: run by test_stream_body.py.

POST any body: the reply is ``<sha256 hex> <byte count>``. Prints its URL, then serves
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import gc
import hashlib
from typing import Any

from pymongoose import (
    MG_EV_HTTP_HDRS,
    PYMG_EV_HTTP_BODY,
    PYMG_EV_HTTP_BODY_END,
    Connection,
    Manager,
)

COLLECT_EVERY = 64 << 20


def handler(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_HDRS:
        conn.userdata = [hashlib.sha256(), 0]
        conn.stream_body(data)
    elif ev == PYMG_EV_HTTP_BODY:
        conn.userdata[0].update(data)
        conn.userdata[1] += len(data)
        if conn.userdata[1] % COLLECT_EVERY < len(data):
            # PyPy's hashlib.update() leaves garbage its GC does not count towards the
            # next major collection: without this, PyPy's RSS follows the upload size.
            gc.collect()
    elif ev == PYMG_EV_HTTP_BODY_END:
        digest, count = conn.userdata
        conn.reply(200, f"{digest.hexdigest()} {count}")


def main() -> None:
    mgr = Manager(handler, events=(MG_EV_HTTP_HDRS, PYMG_EV_HTTP_BODY, PYMG_EV_HTTP_BODY_END))
    listener = mgr.listen("http://127.0.0.1:0")
    addr = listener.local_addr
    assert addr is not None
    print(f"listening on http://127.0.0.1:{addr[1]}", flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
