"""Threads: poll() lets other threads run, Managers work side by side, wakeup() is exact."""

from __future__ import annotations

import inspect
import sys
import threading
import time
from typing import Any

import pytest
import requests
from subprocess_helpers import run_to_end

from pymongoose import MG_EV_HTTP_MSG, MG_EV_WAKEUP, Connection, Manager, WrongThreadError

TIMEOUT = 30.0


def poll_call_line() -> int:
    """The source line of Manager.poll that calls into C (where the thread blocks)."""
    lines, first = inspect.getsourcelines(Manager.poll)
    found = [first + i for i, line in enumerate(lines) if "pymg_poll(" in line]
    assert len(found) == 1, "Manager.poll should call the C function pymg_poll exactly once"
    return found[0]


def blocked_in_poll(thread: threading.Thread, line: int) -> bool:
    """True when ``thread`` is inside the C call of Manager.poll right now."""
    assert thread.ident is not None
    frame = sys._current_frames().get(thread.ident)
    return (frame is not None and frame.f_code.co_name == "poll"
            and frame.f_code.co_filename.endswith("manager.py") and frame.f_lineno == line)


def test_poll_releases_the_gil() -> None:
    """While one thread waits in poll(), this thread keeps running Python code.

    If poll() held the GIL, no other thread could even look at the poller while it
    waits, let alone count: the wait below would only end when poll() timed out.
    """
    mgr = Manager(enable_wakeup=True)
    listener = mgr.listen("tcp://127.0.0.1:0", lambda conn, ev, data: None)
    returned = threading.Event()

    def poll_once() -> None:
        mgr.poll(60_000)  # ends when woken below
        returned.set()

    poller = threading.Thread(target=poll_once, daemon=True)
    line = poll_call_line()
    poller.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not blocked_in_poll(poller, line):
            assert not returned.is_set(), "poll() returned before it was observed blocking"
            assert time.monotonic() < deadline, "never saw the poller blocked in poll()"
        # Count for a while: long enough that the poller, had it not reached the C call
        # yet, gets the GIL and enters it. From then on we only run if C released it.
        progress = 0
        spin_until = time.monotonic() + 0.2
        while time.monotonic() < spin_until:
            progress += 1
        assert blocked_in_poll(poller, line), "the poller left poll() while we counted"
        assert progress > 0 and not returned.is_set()
        assert mgr.wakeup(listener.id, b"done")
        assert returned.wait(TIMEOUT), "wakeup() did not end the blocking poll()"
    finally:
        poller.join(TIMEOUT)
        mgr.close()


class EchoManager:
    """A Manager answering HTTP on its own thread, recording which thread ran handlers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handler_threads: set[int] = set()
        self.errors: list[BaseException] = []
        self.mgr = Manager(self.handle, error_handler=self.errors.append)
        self.listener = self.mgr.listen("http://127.0.0.1:0")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, name=f"poll-{name}", daemon=True)

    def handle(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            self.handler_threads.add(threading.get_ident())
            conn.reply(200, f"{self.name} {data.uri} {data.body_text}")

    def loop(self) -> None:
        while not self.stop.is_set():
            self.mgr.poll(20)
        self.mgr.close()

    @property
    def url(self) -> str:
        addr = self.listener.local_addr
        assert addr is not None
        return f"http://127.0.0.1:{addr[1]}"


def test_managers_in_several_threads_serve_concurrently() -> None:
    """Four Managers, each polled by its own thread, each serving its own clients."""
    servers = [EchoManager(f"m{i}") for i in range(4)]
    clients_per_server, requests_per_client = 3, 25
    start = threading.Barrier(len(servers) * clients_per_server)
    failures: list[str] = []
    answered: list[int] = []

    def client(server: EchoManager, client_no: int) -> None:
        try:
            start.wait(TIMEOUT)
            with requests.Session() as session:
                for i in range(requests_per_client):
                    body = f"{client_no}-{i}"
                    r = session.post(f"{server.url}/c{client_no}", data=body, timeout=TIMEOUT)
                    expected = f"{server.name} /c{client_no} {body}"
                    if r.status_code != 200 or r.text != expected:
                        failures.append(f"{r.status_code} {r.text!r} != {expected!r}")
                    answered.append(1)
        except Exception as exc:  # reported below, with the others
            failures.append(repr(exc))

    for server in servers:
        server.thread.start()
    clients = [threading.Thread(target=client, args=(server, n))
               for server in servers for n in range(clients_per_server)]
    try:
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(TIMEOUT * 2)
    finally:
        for server in servers:
            server.stop.set()
        for server in servers:
            server.thread.join(TIMEOUT)
    assert failures == []
    assert len(answered) == len(servers) * clients_per_server * requests_per_client
    for server in servers:
        assert server.errors == []
        assert server.handler_threads == {server.thread.ident}, "a handler ran on another thread"
        assert server.mgr.closed


def test_wakeup_from_many_threads_delivers_every_message_once_in_order() -> None:
    """8 threads x 10,000 wakeups: each message arrives exactly once, per-thread in order."""
    senders, per_sender = 8, 10_000
    received: list[tuple[int, int]] = []
    flushed = threading.Event()
    errors: list[BaseException] = []

    def on_wakeup(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WAKEUP:
            if data == b"flush":
                flushed.set()
                return
            sender, seq = data.split(b":")
            received.append((int(sender), int(seq)))

    mgr = Manager(on_wakeup, enable_wakeup=True, error_handler=errors.append)
    target = mgr.listen("tcp://127.0.0.1:0").id
    refused: list[int] = []
    stop = threading.Event()

    def poll_loop() -> None:
        while not stop.is_set():
            mgr.poll(20)

    def send_all(sender: int) -> None:
        for seq in range(per_sender):
            while not mgr.wakeup(target, b"%d:%d" % (sender, seq)):
                refused.append(sender)  # documented: False means "try again"

    def flush() -> None:
        """Wait until the messages sent so far were delivered (or lost for good).

        Wakeup messages travel in order, so once a marker sent after them arrives, every
        earlier message has arrived too. The marker itself may be refused or lost: resend.
        """
        deadline = time.monotonic() + TIMEOUT
        while not flushed.is_set():
            assert time.monotonic() < deadline, "no flush marker ever arrived"
            mgr.wakeup(target, b"flush")
            flushed.wait(0.1)

    poller = threading.Thread(target=poll_loop, daemon=True)
    poller.start()
    threads = [threading.Thread(target=send_all, args=(n,)) for n in range(senders)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        flush()
    finally:
        stop.set()
        poller.join(TIMEOUT)
        mgr.close()
    assert errors == []
    expected = {(s, q) for s in range(senders) for q in range(per_sender)}
    missing = expected - set(received)
    assert not missing, (f"{len(missing)} of {len(expected)} wakeup messages never arrived "
                         f"(wakeup() returned False {len(refused)} times)")
    assert len(received) == len(expected), "some wakeup messages arrived twice"
    for sender in range(senders):
        sequence = [q for s, q in received if s == sender]
        assert sequence == sorted(sequence), f"sender {sender}'s messages arrived out of order"


def test_wakeup_with_bounded_backlog_is_exact_and_ordered() -> None:
    """8 threads x 10,000 wakeups, each thread with at most 8 messages in flight: every
    message arrives exactly once, and each thread's messages arrive in order."""
    senders, per_sender, window = 8, 2000, 8
    in_flight = [threading.Semaphore(window) for _ in range(senders)]
    received: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    stalled: list[int] = []

    def on_wakeup(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WAKEUP:
            sender, seq = (int(part) for part in data.split(b":"))
            received.append((sender, seq))
            in_flight[sender].release()

    mgr = Manager(on_wakeup, enable_wakeup=True, error_handler=errors.append)
    target = mgr.listen("tcp://127.0.0.1:0").id
    stop = threading.Event()

    def poll_loop() -> None:
        while not stop.is_set():
            mgr.poll(20)

    def send_all(sender: int) -> None:
        for seq in range(per_sender):
            if not in_flight[sender].acquire(timeout=TIMEOUT):
                stalled.append(sender)  # a message in flight never arrived
                return
            while not mgr.wakeup(target, b"%d:%d" % (sender, seq)):
                pass  # documented: False means "try again"

    poller = threading.Thread(target=poll_loop, daemon=True)
    poller.start()
    threads = [threading.Thread(target=send_all, args=(n,)) for n in range(senders)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 2)
        for sender in range(senders):  # every message delivered: the windows refill
            for _ in range(window):
                assert in_flight[sender].acquire(timeout=TIMEOUT), "messages went missing"
    finally:
        stop.set()
        poller.join(TIMEOUT)
        mgr.close()
    assert errors == [] and stalled == []
    assert len(received) == senders * per_sender
    assert set(received) == {(s, q) for s in range(senders) for q in range(per_sender)}
    for sender in range(senders):
        assert [q for s, q in received if s == sender] == list(range(per_sender))


def test_other_threads_get_a_clear_error_while_the_manager_is_polled() -> None:
    """A Manager belongs to the thread polling it: from another thread, calls that would
    race with the poll loop raise WrongThreadError; wakeup() and close() stay allowed."""
    mgr = Manager(enable_wakeup=True)
    listener = mgr.listen("tcp://127.0.0.1:0")
    spare = mgr.timer_add(60_000, lambda: None)
    inside, release = threading.Event(), threading.Event()
    woken: list[bytes] = []

    def hold_the_poll() -> None:  # a timer callback: runs inside poll(), on its thread
        inside.set()
        release.wait(TIMEOUT)

    def on_wakeup(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WAKEUP:
            woken.append(bytes(data))

    waker = mgr.listen("tcp://127.0.0.1:0", on_wakeup)
    mgr.timer_add(0, hold_the_poll)
    def poll_until_closed() -> None:
        deadline = time.monotonic() + TIMEOUT
        while not mgr.closed and time.monotonic() < deadline:
            mgr.poll(50)

    thread = threading.Thread(target=poll_until_closed, name="the-poller")
    thread.start()
    try:
        assert inside.wait(TIMEOUT)
        attempts: dict[str, Any] = {
            "timer_add": lambda: mgr.timer_add(10, lambda: None),
            "listen": lambda: mgr.listen("tcp://127.0.0.1:0"),
            "connect": lambda: mgr.connect(f"tcp://127.0.0.1:{listener.local_addr[1]}"),
            "connections": lambda: mgr.connections,
            "poll": lambda: mgr.poll(0),
            "shutdown": lambda: mgr.shutdown(1),
            "dns_timeout_ms": lambda: setattr(mgr, "dns_timeout_ms", 500),
        }
        for name, attempt in attempts.items():
            with pytest.raises(WrongThreadError) as caught:
                attempt()
            message = str(caught.value)
            assert "'the-poller'" in message and "wakeup()" in message, name
            assert isinstance(caught.value, RuntimeError), name
        spare.cancel()  # allowed from any thread: C forgets it at its next firing
        assert not spare.active
        assert mgr.wakeup(waker.id, b"still allowed")
        assert mgr.wakeup_id == 0 or mgr.wakeup_id > 0
        release.set()
        deadline = time.monotonic() + TIMEOUT
        while not woken and time.monotonic() < deadline:
            time.sleep(0.01)
        assert woken == [b"still allowed"]
        mgr.close()  # deferred to the poller, which frees the Manager after its poll
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert mgr.closed
    assert mgr.connections == ()


def test_a_timer_cancelled_from_another_thread_stops_firing() -> None:
    mgr = Manager()
    fired: list[float] = []
    timer = mgr.timer_add(5, lambda: fired.append(time.monotonic()), repeat=True)
    stop = threading.Event()

    def poll_until_stopped() -> None:
        while not stop.is_set():
            mgr.poll(2)

    thread = threading.Thread(target=poll_until_stopped, name="the-poller")
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(fired) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(fired) >= 3
        timer.cancel()
        assert not timer.active
        cancelled_at, count = time.monotonic(), len(fired)
        time.sleep(0.2)  # 40 periods
        assert len(fired) <= count + 1  # one firing may have been under way
        assert all(t <= cancelled_at + 0.05 for t in fired)
    finally:
        stop.set()
        thread.join(TIMEOUT)
    mgr.poll(20)
    assert len(fired) <= count + 1
    mgr.close()


# Run in a child: on PyPy 7.3.11, raising the limit to a new high instead crashes the
# interpreter (tests/conftest.py, docs/timers-threads.md), and would take pytest with it.
RECURSION_LIMIT_PROGRAM = """
import sys, threading, time
sys.setrecursionlimit(4000)  # the highest it will be, set before any thread starts
from pymongoose import Manager
mgr = Manager()
ticks = []
mgr.timer_add(1, lambda: ticks.append(1), repeat=True)
stop = threading.Event()
def loop():
    while not stop.is_set():
        mgr.poll(1)
thread = threading.Thread(target=loop)
thread.start()
time.sleep(2)  # long enough for PyPy's JIT to compile the poll loop
for _ in range(500):
    sys.setrecursionlimit(3000)
    time.sleep(0.001)
    sys.setrecursionlimit(4000)
stop.set()
thread.join()
mgr.close()
print("ticks", len(ticks))
"""


@pytest.mark.skipif(sys.implementation.name != "pypy",
                    reason="the crash this guards against is PyPy's (its JIT); CPython "
                           "has no such limit on changing the recursion limit")
def test_recursion_limit_set_before_threads_can_move_while_a_thread_polls() -> None:
    """The documented way round PyPy's crash: the highest limit set before any thread
    starts; lowering it and raising it back while a thread polls is then safe."""
    result = run_to_end("-c", RECURSION_LIMIT_PROGRAM, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    ticks = int(result.stdout.split()[-1])
    assert ticks > 100  # the poll thread really ran throughout
