"""Shared test helpers: a Manager polled in a background thread, on 127.0.0.1, port 0."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest

from pymongoose import Connection, Manager

# PyPy 7.3.11 (Debian 12's pypy3) can crash when the recursion limit is raised above
# every earlier value while another thread loops in JIT-compiled code around a C call
# that releases the GIL, as a poll thread does (docs/timers-threads.md). Hypothesis
# moves the limit around every example. Raised once here, before any thread starts,
# above anything Hypothesis sets (its depth, at most 1000, + 2000), no later change
# is a new high.
RECURSION_LIMIT_BEFORE_THREADS = 4000
if sys.implementation.name == "pypy":
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT_BEFORE_THREADS))


@dataclass
class Server:
    """A running Manager: the listener, its port, and the base URL."""

    manager: Manager
    listener: Connection
    errors: list[BaseException] = field(default_factory=list)

    @property
    def port(self) -> int:
        addr = self.listener.local_addr
        assert addr is not None
        return addr[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving(handler: Callable[[Connection, int, Any], Any], url: str = "http://127.0.0.1:0",
            *, poll_ms: int = 20, setup: Optional[Callable[[Manager], None]] = None,
            **listen_kwargs: Any) -> Iterator[Server]:
    """Listen on ``url`` with ``handler``; poll in a thread until the block ends.

    Everything that touches the Manager is done before the poll thread starts or from
    inside handlers, which run on that thread: a Manager belongs to the thread polling it.
    Handler exceptions are collected in ``server.errors``.
    """
    errors: list[BaseException] = []
    manager = Manager(error_handler=errors.append)
    listener = manager.listen(url, handler, **listen_kwargs)
    if setup is not None:
        setup(manager)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            manager.poll(poll_ms)

    thread = threading.Thread(target=loop, name="pymongoose-test-poll", daemon=True)
    thread.start()
    try:
        yield Server(manager, listener, errors)
    finally:
        stop.set()
        thread.join(timeout=10)
        manager.close()


@pytest.fixture
def serve() -> Callable[..., Any]:
    """The :func:`serving` context manager, as a fixture."""
    return serving


def read_until_closed(sock: socket.socket, *, reset_is_close: bool = False) -> bytes:
    """Everything the peer sends on ``sock`` until it closes the connection (the
    socket's own timeout applies). ``reset_is_close``: a reset ends it too."""
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        if not reset_is_close:
            raise
    return bytes(data)


@pytest.fixture(autouse=True)
def _close_websocket_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every websocket-client connection a test opened, once the test ends.

    websocket-client's ``close()`` returns without closing its socket once the server
    has closed the session (it has already answered the close frame), so a test that
    checks the server's close would leave the socket to the garbage collector, and
    its ResourceWarning to whichever test runs then.
    """
    try:
        import websocket
    except ImportError:
        yield
        return
    opened: list[Any] = []
    real_connect = websocket.WebSocket.connect

    def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real_connect(self, *args, **kwargs)

    monkeypatch.setattr(websocket.WebSocket, "connect", connect)
    yield
    for ws in opened:
        ws.shutdown()
