"""A closed Manager refuses run() like every other method; a Manager dropped without
close() is freed by the garbage collector (its sockets closed, its registry slot gone)
with a ResourceWarning, and that leaves the Managers still in use alone.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading
import warnings
import weakref
from typing import Any, Callable

import pytest
import requests
from conftest import serving

from pymongoose import (
    MG_EV_HTTP_MSG,
    Connection,
    Manager,
    ManagerClosedError,
    _dispatch,
)

TIMEOUT = 10.0

def port_of(conn: Connection) -> int:
    """The port a listener was given (port 0 asks for a free one)."""
    addr = conn.local_addr
    assert addr is not None
    return addr[1]


def hello(conn: Connection, ev: int, data: Any) -> None:
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "hello")


# -- a closed Manager ----------------------------------------------------------------------

CLOSED_CALLS: dict[str, Callable[[Manager], Any]] = {
    "run": lambda m: m.run(),
    "run_on_ready": lambda m: m.run(on_ready=lambda: None),
    "poll": lambda m: m.poll(0),
    "listen": lambda m: m.listen("http://127.0.0.1:0"),
    "connect": lambda m: m.connect("tcp://127.0.0.1:9"),
    "timer_add": lambda m: m.timer_add(10, lambda: None),
    "wakeup_id": lambda m: m.wakeup_id,
}


@pytest.mark.parametrize("call", CLOSED_CALLS.values(), ids=CLOSED_CALLS.keys())
def test_a_closed_manager_raises_manager_closed_error(call: Callable[[Manager], Any]) -> None:
    mgr = Manager(hello)
    mgr.close()
    with pytest.raises(ManagerClosedError, match="closed"):
        call(mgr)


def test_run_refuses_a_closed_manager_before_touching_signal_handlers() -> None:
    before = signal.getsignal(signal.SIGINT)
    mgr = Manager()
    mgr.close()
    with pytest.raises(ManagerClosedError):
        mgr.run()
    assert signal.getsignal(signal.SIGINT) is before


def test_run_calls_on_ready_once_then_polls_until_close() -> None:
    mgr = Manager()
    calls: list[str] = []

    def tick() -> None:
        calls.append("timer")
        mgr.close()  # from inside poll: takes effect when it returns, ending run()

    mgr.timer_add(1, tick)
    mgr.run(poll_ms=10, on_ready=lambda: calls.append("ready"))
    assert calls == ["ready", "timer"]
    assert mgr.closed


def test_run_refuses_a_bad_on_ready_and_leaves_the_manager_open() -> None:
    with Manager() as mgr:
        with pytest.raises(TypeError, match="on_ready"):
            mgr.run(on_ready="print")  # type: ignore[arg-type]
        assert not mgr.closed


# -- dropped without close() ---------------------------------------------------------------

def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def collect() -> None:
    for _ in range(3):  # PyPy runs weakref callbacks after the collection that found them
        gc.collect()


def drop_managers(count: int) -> list[weakref.ref[Manager]]:
    """Make ``count`` Managers with an HTTP and a UDP listener each; keep none."""
    refs = []
    for _ in range(count):
        mgr = Manager(hello, enable_wakeup=True)
        mgr.listen("http://127.0.0.1:0")
        mgr.listen("udp://127.0.0.1:0")
        mgr.poll(0)
        refs.append(weakref.ref(mgr))
    return refs


def test_dropped_managers_free_their_sockets_and_memory() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        drop_managers(100)  # warm-up: allocator pools, imports, caches
        collect()
        fds, rss, slots = open_fds(), resident_bytes(), len(_dispatch.MANAGERS)
        for _ in range(3):
            refs = drop_managers(100)
            collect()
            assert all(ref() is None for ref in refs)
            assert open_fds() == fds  # 4 descriptors each (epoll, wakeup pair, 2 listeners)
            assert len(_dispatch.MANAGERS) == slots
    # 300 leaked managers would hold 1200 descriptors and well over 30 MB (their
    # 100 KB event queues alone); allow for allocator noise only.
    assert resident_bytes() - rss < 16 * 1024 * 1024


def test_a_dropped_manager_warns_and_closes_its_accepted_connections() -> None:
    mgr = Manager(hello)
    port = port_of(mgr.listen("tcp://127.0.0.1:0"))
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        while len(mgr.connections) < 2:  # the listener and the accepted connection
            mgr.poll(10)
        with pytest.warns(ResourceWarning, match="without close"):
            del mgr
            collect()
        assert client.recv(1) == b""  # the server side was closed: EOF
    finally:
        client.close()


def test_a_closed_manager_is_collected_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        mgr = Manager(hello)
        mgr.listen("http://127.0.0.1:0")
        mgr.close()
        ref = weakref.ref(mgr)
        del mgr
        collect()
    assert ref() is None


def test_a_manager_polled_in_another_thread_is_unaffected() -> None:
    served = threading.Event()

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "still here")
            served.set()

    with serving(handler) as server:
        # Nothing but the poll thread references this Manager's internals.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            drop_managers(100)
            collect()
        response = requests.get(server.url + "/", timeout=TIMEOUT)
        assert (response.status_code, response.text) == (200, "still here")
        assert served.is_set()
        assert not server.manager.closed
    assert server.errors == []
