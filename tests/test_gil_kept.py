"""On CPython, the C calls of the per-message paths keep the GIL (``build_ffi.GIL_KEPT``):
no other thread runs while they do, and the ~400 instructions of a GIL hand-off are
saved on every WebSocket send and HTTP reply. ``pymg_poll`` still lets other threads run.

A busy second thread is kept waiting by a long switch interval, so that only a GIL
release inside a C call can let it in.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import serving
from net_helpers import poll_until
from test_lifetime import port_of
from ws_frames import FIN, OP_BINARY, client_frame, read_frames, upgrade

from pymongoose import Connection, Manager
from pymongoose._ffi import ffi, lib

pytestmark = pytest.mark.skipif(
    sys.implementation.name != "cpython",
    reason="PyPy calls C directly and releases the GIL itself; GIL_KEPT edits the "
           "wrappers only CPython calls through")

SWITCH_INTERVAL = 0.5  # seconds; each measured batch of calls takes well under 10 ms


def other_thread_ran_during(calls: Callable[[], None]) -> bool:
    """Whether a busy thread got the GIL because ``calls()`` released it.

    The busy thread starts waiting for the GIL just before ``calls()`` does; CPython
    makes this thread hand it over only after the switch interval. So a busy thread
    that first runs within half the interval was let in by a release inside a call,
    however slow the machine is.
    """
    armed = [False]
    first_run: list[float] = []
    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        started.set()
        while not stop.is_set():
            if armed[0] and not first_run:
                first_run.append(time.perf_counter())

    previous = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    thread = threading.Thread(target=spin, daemon=True)
    try:
        thread.start()
        started.wait()  # the spinner now waits for the GIL this thread holds
        armed[0] = True
        began = time.perf_counter()
        calls()
        return bool(first_run) and first_run[0] - began < SWITCH_INTERVAL / 2
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(previous)


@pytest.fixture
def client_c() -> Iterator[Any]:
    """The C connection of a connected TCP client, on 127.0.0.1."""
    connected: list[Connection] = []

    def on_connect(conn: Connection, ev: int, data: Any) -> None:
        if ev == lib.MG_EV_CONNECT:
            connected.append(conn)

    manager = Manager(on_connect)
    try:
        listener = manager.listen("tcp://127.0.0.1:0")
        client = manager.connect(f"tcp://127.0.0.1:{port_of(listener)}")
        poll_until(manager, lambda: bool(connected), what="MG_EV_CONNECT")
        assert connected == [client]
        yield client._c
    finally:
        manager.close()


PAYLOAD = b"x" * 64
# Each kept call, as the per-message paths make it.
KEPT_CALLS: dict[str, Callable[[Any, Any], Any]] = {
    "pymg_conn_flags": lambda c, opts: lib.pymg_conn_flags(c),
    "pymg_mqtt_version": lambda c, opts: lib.pymg_mqtt_version(c),
    "pymg_ws_send": lambda c, opts: lib.pymg_ws_send(c, PAYLOAD, len(PAYLOAD), 2),
    "mg_ws_send": lambda c, opts: lib.mg_ws_send(c, PAYLOAD, len(PAYLOAD), 2),
    "mg_send": lambda c, opts: lib.mg_send(c, PAYLOAD, len(PAYLOAD)),
    "pymg_http_reply": lambda c, opts: lib.pymg_http_reply(c, 200, b"", 0, PAYLOAD, 64),
    "pymg_asgi_send": lambda c, opts: lib.pymg_asgi_send(c, PAYLOAD, len(PAYLOAD), 0),
    "mg_mqtt_pub": lambda c, opts: lib.mg_mqtt_pub(c, opts),
}


@pytest.mark.parametrize("name", sorted(KEPT_CALLS))
def test_the_per_message_calls_keep_the_gil(client_c: Any, name: str) -> None:
    opts = ffi.new("struct mg_mqtt_opts *")
    topic = ffi.from_buffer(b"t")
    opts.topic.buf, opts.topic.len = topic, 1
    call = KEPT_CALLS[name]

    def calls() -> None:
        for _ in range(3000):
            call(client_c, opts)

    assert not other_thread_ran_during(calls), f"{name} released the GIL"


def test_polling_still_lets_other_threads_run() -> None:
    manager = Manager(lambda conn, ev, data: None)

    def wait() -> None:
        manager.poll(int(SWITCH_INTERVAL * 100))  # milliseconds: a fifth of the interval

    try:
        assert other_thread_ran_during(wait)
    finally:
        manager.close()


def test_a_websocket_echo_works_with_other_threads_busy() -> None:
    """The kept GIL changes nothing a handler or a client sees, threads competing."""

    def echo(conn: Connection, ev: int, data: Any) -> None:
        if ev == lib.MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == lib.MG_EV_WS_MSG:
            conn.ws_send(data.data, lib.WEBSOCKET_OP_BINARY)

    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    busy = [threading.Thread(target=spin), threading.Thread(target=spin)]
    with serving(echo) as server:
        for thread in busy:
            thread.start()
        try:
            sock, _, rest = upgrade(server.port)
            with sock:
                for size in (0, 5, 125, 126, 70_000):
                    payload = bytes(i % 251 for i in range(size))
                    sock.sendall(client_frame(FIN | OP_BINARY, payload))
                    frames, rest = read_frames(sock, 1, rest)
                    assert [(f.op, f.fin, f.payload) for f in frames] == \
                        [(OP_BINARY, True, payload)]
        finally:
            stop.set()
            for thread in busy:
                thread.join()
    assert server.errors == []
