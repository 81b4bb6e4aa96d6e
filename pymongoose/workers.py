"""Prefork workers: one listening socket, bound by the parent, served by N processes.

The parent binds the address once (so port 0 and bind errors are settled before any
fork), forks ``workers`` children that serve the inherited socket, restarts a child
that dies, and on SIGTERM or SIGINT asks every child to stop gracefully: stop
accepting, finish in-flight requests (for up to ``graceful_timeout`` seconds), exit 0.

A worker is a function ``worker_main(ctx)`` run in each child. It serves
``ctx.sock`` (``Manager.listen_socket``) until ``ctx.stopping`` is set, then shuts
down; :func:`serve_manager` does that loop for a Manager::

    def worker_main(ctx):
        mgr = Manager(handler)
        mgr.listen_socket(ctx.sock)
        serve_manager(ctx, mgr)

    workers.run("http://127.0.0.1:8000", worker_main, workers=4, on_ready=print)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Callable, Optional

from .errors import ListenError
from .manager import Manager

__all__ = ["WorkerContext", "bind", "run", "serve_manager"]

_log = logging.getLogger("pymongoose.workers")

#: A child that dies sooner than this after its start counts as a crash loop:
#: its replacement waits a little, so a broken app does not fork as fast as it can.
_QUICK_DEATH_S = 1.0
_RESTART_DELAY_S = 0.5
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass
class WorkerContext:
    """What a worker process gets: the shared socket and the way to learn it must stop."""

    #: The listening socket the parent bound (inherited across fork).
    sock: socket.socket
    #: The URL the socket serves, with the real port.
    url: str
    #: 0 .. workers-1; a restarted worker keeps the number of the one it replaces.
    worker_id: int
    #: Seconds a graceful stop may take before in-flight work is abandoned.
    graceful_timeout: float
    #: Set when the worker must stop (SIGTERM or SIGINT reached it).
    stopping: threading.Event = field(default_factory=threading.Event)


def _split_url(url: str) -> tuple[str, str, int]:
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "http", url
    scheme = scheme.lower()
    if scheme not in ("http", "tcp", "ws"):
        raise ValueError(f"{url!r}: workers serve http://, ws:// or tcp:// URLs")
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.lstrip(":")
    else:
        host, _, port_text = hostport.rpartition(":")
        if not _:
            host, port_text = hostport, "80"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{url!r}: the port must be a number from 0 to 65535")
    if host in ("", "localhost"):
        host = "127.0.0.1"
    return scheme, host, int(port_text)


def bind(url: str, backlog: int = 1024) -> tuple[socket.socket, str]:
    """Bind and listen on ``url``'s address; returns the socket and the URL with the
    real port (port 0 picks a free one). Raises ListenError naming the URL."""
    scheme, host, port = _split_url(url)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        code = exc.errno or errno.EINVAL
        raise ListenError(code, f"cannot listen on {url}: {exc.strerror or exc}") from None
    real_port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return sock, f"{scheme}://{shown}:{real_port}"


def serve_manager(ctx: WorkerContext, manager: Manager, poll_ms: int = 100) -> bool:
    """Poll ``manager`` until ``ctx.stopping`` is set, then shut it down gracefully.

    Returns what :meth:`Manager.shutdown` returns: True when in-flight work finished
    within ``ctx.graceful_timeout``.
    """
    while not ctx.stopping.is_set() and not manager.closed:
        manager.poll(poll_ms)
    ctx.sock.close()  # our inherited copy: the listener closes its own in shutdown()
    if manager.closed:
        return True
    return manager.shutdown(ctx.graceful_timeout)


class _AcceptRaceFilter(logging.Filter):
    """Workers race to accept each connection; the losers' EAGAIN is no error."""

    # Mongoose logs the number, which differs between systems (11 on Linux, 35 on macOS).
    _LINE = f"accept failed, errno {errno.EAGAIN}"

    def filter(self, record: logging.LogRecord) -> bool:
        return self._LINE not in record.getMessage()


def _child(ctx: WorkerContext, worker_main: Callable[[WorkerContext], object]) -> int:
    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        ctx.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    logging.getLogger("pymongoose.mongoose").addFilter(_AcceptRaceFilter())
    try:
        worker_main(ctx)
    except BaseException:
        _log.exception("worker %d (pid %d) failed", ctx.worker_id, os.getpid())
        return 1
    return 0


class _Supervisor:
    """The parent's side: fork, watch, restart, stop."""

    def __init__(self, sock: socket.socket, url: str,
                 worker_main: Callable[[WorkerContext], object], workers: int,
                 graceful_timeout: float) -> None:
        self.sock = sock
        self.url = url
        self.worker_main = worker_main
        self.workers = workers
        self.graceful_timeout = graceful_timeout
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker id, start)
        self.stopping = False
        self.failed = False

    def spawn(self, worker_id: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # Signals wait until the child has its own handlers (the parent's would act on
        # the child's copy of the supervisor).
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the child: serve, then leave without running the parent's code
            code = 1
            try:
                code = _child(WorkerContext(self.sock, self.url, worker_id,
                                            self.graceful_timeout), self.worker_main)
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        self.children[pid] = (worker_id, time.monotonic())

    def on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.signal_children(signal.SIGTERM)
        self.sock.close()  # nothing new is accepted once the children close theirs
        # The children stop within graceful_timeout; past a margin they are killed.
        killer = threading.Timer(self.graceful_timeout + 5.0, self.signal_children,
                                 args=(signal.SIGKILL,))
        killer.daemon = True
        killer.start()

    def signal_children(self, sig: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                self.children.clear()
                break
            if pid not in self.children:
                continue
            worker_id, started = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
                else (status >> 8)
            if self.stopping:
                if code != 0:
                    self.failed = True
                    _log.warning("worker %d (pid %d) exited with %d while stopping",
                                 worker_id, pid, code)
                continue
            _log.warning("worker %d (pid %d) exited with %d; starting a new one",
                         worker_id, pid, code)
            if time.monotonic() - started < _QUICK_DEATH_S:
                time.sleep(_RESTART_DELAY_S)  # crash loop: do not fork flat out
            if not self.stopping:
                self.spawn(worker_id)


def run(url: str, worker_main: Callable[[WorkerContext], object], workers: int = 2, *,
        graceful_timeout: float = 30.0,
        on_ready: Optional[Callable[[str], object]] = None) -> int:
    """Serve ``url`` with ``workers`` forked processes running ``worker_main(ctx)``.

    Binds first (raises ListenError before any fork), calls ``on_ready(real_url)``,
    then supervises: a child that dies is replaced; SIGTERM or SIGINT forwards SIGTERM
    to every child and waits for them. Returns 0 when every child stopped cleanly, 1
    otherwise (use it as the exit code). Call it from the main thread, before any
    Manager or thread exists in this process (fork copies only the calling thread).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, not {workers!r}")
    if not callable(worker_main):
        raise TypeError(f"worker_main must be callable, not {type(worker_main).__name__}")
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("workers.run() must be called from the main thread")
    sock, real_url = bind(url)
    supervisor = _Supervisor(sock, real_url, worker_main, workers, float(graceful_timeout))
    previous = {sig: signal.signal(sig, supervisor.on_signal)
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_ready is not None:
            on_ready(real_url)
        for worker_id in range(workers):
            if supervisor.stopping:  # a signal during start-up: the socket is closed
                break
            supervisor.spawn(worker_id)
        supervisor.reap()
    finally:
        supervisor.stopping = True
        supervisor.signal_children(signal.SIGTERM)
        for sig, old in previous.items():
            signal.signal(sig, old)
        sock.close()
    return 1 if supervisor.failed else 0
