"""A prefork server for test_workers.py: ``python tests/workers_app.py N``.

GET /pid answers the worker's pid; GET /busy?ms=M answers it after blocking the
worker's loop for M ms (a stand-in for CPU-bound work); GET /slow?ms=M answers after
a timer of M ms and prints ``slow started <pid>`` when it begins.
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
        print(f"slow started {os.getpid()}", flush=True)

        def answer() -> None:
            if not conn.is_closed:
                conn.reply(200, f"slow done {os.getpid()}")

        conn._manager.timer_add(ms, answer)
    else:
        conn.reply(200, str(os.getpid()))


def worker_main(ctx: WorkerContext) -> None:
    mgr = Manager(handler, events=(MG_EV_HTTP_MSG,))
    mgr.listen_socket(ctx.sock)
    print(f"worker {ctx.worker_id} ready {os.getpid()}", flush=True)
    serve_manager(ctx, mgr)


if __name__ == "__main__":
    sys.exit(run("http://127.0.0.1:0", worker_main, workers=int(sys.argv[1]),
                 graceful_timeout=20.0, on_ready=lambda url: print(f"serving {url}",
                                                                    flush=True)))
