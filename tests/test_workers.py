"""Prefork workers (pymongoose.workers) and Manager.listen_socket / shutdown."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import serving
from subprocess_helpers import Child, running

from pymongoose import MG_EV_HTTP_MSG, Connection, ListenError, Manager
from pymongoose.workers import bind, run


def get(port: int, path: str, timeout: float = 30.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def two_workers() -> Iterator[tuple[Child, int]]:
    # running() kills the server's whole process group when the test ends, workers
    # included: a failed test leaves none behind holding the output pipes open.
    with running("tests/workers_app.py", "2") as child:
        port = int(child.wait_for(r"serving http://127\.0\.0\.1:(\d+)").group(1))
        child.wait_for(r"worker \d ready")
        child.wait_for(r"worker \d ready")
        yield child, port


def test_two_workers_answer_from_two_processes(two_workers: tuple[Child, int]) -> None:
    child, port = two_workers
    pids: set[int] = set()
    # /busy blocks the worker that took it, so concurrent requests reach the other.
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            results = list(pool.map(lambda _: get(port, "/busy?ms=50"), range(8)))
            assert all(status == 200 for status, _ in results)
            pids |= {int(body) for _, body in results}
            if len(pids) == 2:
                break
    assert len(pids) == 2
    assert all(parent_of(pid) == child.proc.pid for pid in pids)
    assert child.stop(signal.SIGTERM) == 0


def test_killed_worker_is_replaced_without_losing_other_requests(
        two_workers: tuple[Child, int]) -> None:
    child, port = two_workers
    clients = 4
    stop = threading.Event()
    failures: list[BaseException] = []
    seen: list[int] = []
    lock = threading.Condition()

    def load() -> None:
        while not stop.is_set():
            try:
                status, body = get(port, "/pid", timeout=10)
                assert status == 200
                with lock:
                    seen.append(int(body))
                    lock.notify_all()
            except (OSError, http.client.HTTPException, AssertionError) as exc:
                with lock:
                    failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        # Wait (on responses, not time) for a victim, kill it, then for its replacement.
        with lock:
            assert lock.wait_for(lambda: seen, timeout=60)
            victim = seen[-1]
            original = set(seen)
            before_kill = len(seen)
        os.kill(victim, signal.SIGKILL)
        replacement = child.wait_for(r"worker \d ready (\d+)")
        new_pid = int(replacement.group(1))
        assert new_pid not in original
        with lock:
            assert lock.wait_for(lambda: new_pid in seen[before_kill:], timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert parent_of(new_pid) == child.proc.pid
    # At most the requests the victim held when it died fail: one per client.
    assert len(failures) <= clients, failures
    assert child.stop(signal.SIGTERM) == 0


def test_sigterm_lets_in_flight_requests_finish(two_workers: tuple[Child, int]) -> None:
    child, port = two_workers
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(3)]
    responses = []
    for client in clients:
        client.request("GET", "/slow?ms=1500")
        responses.append(client.getresponse())  # the head is here: the request is in flight
    child.proc.send_signal(signal.SIGTERM)
    bodies = [response.read().decode() for response in responses]
    assert [response.status for response in responses] == [200, 200, 200]
    assert all(body.startswith("slow done") for body in bodies), bodies
    assert child.proc.wait(timeout=60) == 0
    for client in clients:
        client.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_bind_errors_come_before_forking() -> None:
    sock, url = bind("http://127.0.0.1:0")
    try:
        port = sock.getsockname()[1]
        assert url == f"http://127.0.0.1:{port}"
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}"):
            run(f"http://127.0.0.1:{port}", lambda ctx: None, workers=1)
        with pytest.raises(ValueError):
            run("http://127.0.0.1:0", lambda ctx: None, workers=0)
    finally:
        sock.close()


def test_listen_socket_serves_an_inherited_socket() -> None:
    sock, url = bind("http://127.0.0.1:0")

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "adopted " + data.uri)

    def setup(mgr: Manager) -> None:
        listener = mgr.listen_socket(sock, handler)
        assert listener.is_listening
        assert listener.local_addr == ("127.0.0.1", sock.getsockname()[1], False)

    with serving(lambda *a: None, setup=setup):
        sock.close()  # Mongoose holds its own duplicate
        assert get(int(url.rsplit(":", 1)[1]), "/x") == (200, "adopted /x")


def test_listen_socket_refuses_what_it_cannot_serve() -> None:
    with Manager() as mgr:
        with pytest.raises(TypeError):
            mgr.listen_socket(5)  # type: ignore[arg-type]
        unbound = socket.socket()
        with pytest.raises(ValueError, match="listen"):
            mgr.listen_socket(unbound)
        unbound.close()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(ValueError, match="TCP"):
            mgr.listen_socket(udp)
        udp.close()


def test_shutdown_waits_for_busy_connections_and_closes_idle_ones() -> None:
    pending: list[Connection] = []
    mgr = Manager()

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/slow":
                pending.append(conn)
                mgr.timer_add(200, lambda: conn.reply(200, "late"))
            else:
                conn.reply(200, "now")

    listener = mgr.listen("http://127.0.0.1:0", handler)
    port = listener.local_addr[1]  # type: ignore[index]
    results: dict[str, Any] = {}

    def client(name: str, path: str) -> None:
        results[name] = get(port, path)

    idle = socket.create_connection(("127.0.0.1", port))
    slow = threading.Thread(target=client, args=("slow", "/slow"))
    slow.start()
    while not pending or len(mgr.connections) < 3:  # the listener, idle and slow
        mgr.poll(20)
    assert mgr.shutdown(30) is True
    slow.join(30)
    assert results["slow"] == (200, "late")
    assert idle.recv(10) == b""  # the idle keep-alive connection was closed
    idle.close()
    assert mgr.closed
