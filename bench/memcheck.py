"""A short, representative pymongoose workload in one process, for valgrind's memcheck.

    PYTHONMALLOC=malloc valgrind --tool=memcheck --error-exitcode=99 \\
        --leak-check=no --track-origins=yes \\
        --suppressions=bench/valgrind-python.supp python bench/memcheck.py

(docs/safety.md, "valgrind".) One Manager serves HTTP and WebSocket on 127.0.0.1
and is its own client: HTTP requests over keep-alive and fresh connections, a
WebSocket echo with small (queued in C) and large (delivered directly) messages, a
repeating and a one-shot timer, a cancelled timer, and wakeups from another thread.
It checks every answer and exits 0, so valgrind's exit status says whether memcheck
found an error. ``--rounds`` scales it (valgrind runs it about 50 times slower).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from pymongoose import (
    MG_EV_CONNECT,
    MG_EV_HTTP_MSG,
    MG_EV_WAKEUP,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    Connection,
    Manager,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args(argv).rounds
    counts = {"http": 0, "ws": 0, "ticks": 0, "once": 0, "cancelled": 0, "wakeups": 0}
    errors: list[BaseException] = []
    mgr = Manager(enable_wakeup=True, error_handler=errors.append)

    def server(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/ws":
                conn.ws_upgrade(data)
            else:
                conn.reply(200, data.body_bytes or data.uri,
                           headers={"X-Query": data.query_var("q") or ""})
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(data.data, data.op)
        elif ev == MG_EV_WAKEUP:
            counts["wakeups"] += 1
            conn.userdata = bytes(data)

    listener = mgr.listen("http://127.0.0.1:0", server)
    port = listener.local_addr[1]  # type: ignore[index]
    base = f"http://127.0.0.1:{port}"

    def http_client(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            for i in range(3):  # pipelined on one keep-alive connection
                conn.send(f"POST /p?q={i} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
                          f"body{i}")
        elif ev == MG_EV_HTTP_MSG:
            assert data.status() == 200 and data.body_bytes.startswith(b"body"), data.head_bytes
            assert data.header("X-Query") in ("0", "1", "2")
            counts["http"] += 1
            conn.userdata = (conn.userdata or 0) + 1
            if conn.userdata == 3:
                conn.close()

    sizes = [10, 100, 20_000, 70_000]  # two batched in C, two delivered directly

    def ws_client(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_OPEN:
            for size in sizes:
                conn.ws_send(bytes([size % 251]) * size, WEBSOCKET_OP_BINARY)
        elif ev == MG_EV_WS_MSG:
            assert len(data.data) in sizes and data.data[:1] == bytes([len(data.data) % 251])
            counts["ws"] += 1
            conn.userdata = (conn.userdata or 0) + 1
            if conn.userdata == len(sizes):
                conn.close()

    def tick() -> None:
        counts["ticks"] += 1

    def once() -> None:
        counts["once"] += 1

    def never() -> None:
        counts["cancelled"] += 1

    ticker = mgr.timer_add(5, tick, repeat=True)
    mgr.timer_add(1, once)
    mgr.timer_add(1, never).cancel()

    stop = threading.Event()
    target = {"id": 0}

    def waker() -> None:
        n = 0
        while not stop.is_set():
            if target["id"]:
                mgr.wakeup(target["id"], b"w%d" % n)
                n += 1
            time.sleep(0.002)  # a steady trickle from another thread

    thread = threading.Thread(target=waker)
    thread.start()

    try:
        for _ in range(rounds):
            mgr.connect(base, http_client)
            mgr.ws_connect(f"ws://127.0.0.1:{port}/ws", ws_client)
            before = counts["http"], counts["ws"]
            deadline = time.monotonic() + 60
            while (counts["http"] - before[0] < 3 or counts["ws"] - before[1] < len(sizes)) \
                    and time.monotonic() < deadline:
                mgr.poll(10)
                accepted = [c for c in mgr.connections if not c.is_listening
                            and not c.is_client]
                target["id"] = accepted[0].id if accepted else 0
        end = time.monotonic() + 1
        while counts["wakeups"] == 0 and time.monotonic() < end:
            mgr.poll(10)
    finally:
        stop.set()
        thread.join()
        ticker.cancel()
        mgr.close()
    expected = {"http": 3 * rounds, "ws": len(sizes) * rounds, "once": 1, "cancelled": 0}
    wrong = {k: counts[k] for k, v in expected.items() if counts[k] != v}
    if wrong or errors or counts["ticks"] == 0 or counts["wakeups"] == 0:
        print(f"memcheck workload FAILED: {counts} errors={errors!r}", file=sys.stderr)
        return 1
    print(f"memcheck workload ok: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
