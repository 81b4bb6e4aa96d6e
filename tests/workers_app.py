"""A prefork server for test_workers.py: ``python tests/workers_app.py N``.

GET /pid answers the worker's pid; GET /busy?ms=M answers it after blocking the
worker's loop for M ms (a stand-in for CPU-bound work); GET /slow?ms=M answers after
a timer of M ms (its head is sent at once, so the client knows it is in flight).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from pymongoose import MG_EV_HTTP_MSG, Connection, Manager
from pymongoose.workers import WorkerContext, run, serve_manager


def handler(conn: Connection, ev: int, data: Any) -> None:
    if ev != MG_EV_HTTP_MSG:
        return
    ms = int(data.query_var("ms") or 0)
    if data.uri == "/busy":
        time.sleep(ms / 1000)
        conn.reply(200, str(os.getpid()))
    elif data.uri == "/slow":
        # The head goes out now (the client knows the request is in flight), the
        # body after the timer.
        conn.reply(200, headers={"Transfer-Encoding": "chunked"})

        def answer() -> None:
            if not conn.is_closed:
                conn.http_chunk(f"slow done {os.getpid()}")
                conn.http_chunk("")

        conn._manager.timer_add(ms, answer)
    else:
        conn.reply(200, str(os.getpid()))


def worker_main(ctx: WorkerContext) -> None:
    mgr = Manager(handler, events=(MG_EV_HTTP_MSG,))
    mgr.listen_socket(ctx.sock)
    # One write per line: print() writes text and newline separately, and two workers
    # starting together could interleave them on the shared pipe.
    os.write(1, f"worker {ctx.worker_id} ready {os.getpid()}\n".encode())
    serve_manager(ctx, mgr)


if __name__ == "__main__":
    sys.exit(run("http://127.0.0.1:0", worker_main, workers=int(sys.argv[1]),
                 graceful_timeout=20.0, on_ready=lambda url: print(f"serving {url}",
                                                                    flush=True)))
