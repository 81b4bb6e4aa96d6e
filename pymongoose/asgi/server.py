"""The ASGI server: ASGIServer, serve(), and the prefork workers' main loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import warnings
from typing import Any, Optional, Union

from .._ffi import ffi, lib
from .._startup import startup_line
from ..aio import AsyncManager
from ..connection import Connection
from ..constants import (
    MG_EV_CLOSE,
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    MG_EV_WRITE,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    PYMG_EV_HTTP_BODY,
    PYMG_EV_HTTP_BODY_END,
    WEBSOCKET_OP_CLOSE,
    WEBSOCKET_OP_TEXT,
)
from ..limits import Limits
from ..manager import Manager
from ..messages import HttpMessage, WsMessage
from ..ws_deflate import PerMessageDeflate
from ..ws_deflate import options as ws_deflate_options
from ._http import HttpCycle, want_writes
from ._http import report as report_http
from ._lifespan import Lifespan, LifespanFailure
from ._scope import (
    ASGI_INFO,
    CONNECTION,
    CONTENT_LENGTH,
    TRANSFER_ENCODING,
    UPGRADE,
    WS_KEY,
    WS_PROTOCOL,
    ASGIApp,
    parse_head,
)
from ._ws import WebSocketCycle

__all__ = ["ASGIServer", "serve"]

# Requests start at MG_EV_HTTP_HDRS: a body is then streamed to the app in pieces
# (PYMG_EV_HTTP_BODY), and a request without one costs a single call into Python, since
# its MG_EV_HTTP_MSG is dropped in C. Only a static root needs MG_EV_HTTP_MSG.
_EVENTS = (MG_EV_HTTP_HDRS, PYMG_EV_HTTP_BODY, PYMG_EV_HTTP_BODY_END, MG_EV_WS_MSG,
           MG_EV_WS_CTL, MG_EV_CLOSE)
_EVENTS_WITH_STATIC = (*_EVENTS, MG_EV_HTTP_MSG)
_unpack = ffi.unpack
_conn_flags = lib.pymg_conn_flags
_F_CLOSING = lib.PYMG_CLOSING


class _Peer:
    """What the server keeps per connection: addresses (read once) and the live cycle."""

    __slots__ = ("client", "cycle", "events", "is_tls", "server", "static")

    def __init__(self, conn: Connection) -> None:
        remote, local = conn.remote_addr, conn.local_addr
        self.client = (remote[0], remote[1]) if remote else None
        self.server = (local[0], local[1]) if local else None
        self.cycle: Any = None
        self.is_tls = conn.is_tls
        self.static = False  # the request in flight is a file under root
        self.events: tuple[int, ...] = ()  # the interest its send() set, if not the server's


class ASGIServer:
    """Serves an ASGI 3.0 application from the running asyncio loop (uvloop too).

    ``root``: a folder whose files Mongoose serves itself (GET and HEAD) before the
    application sees the request; ``access_log``: one line per response to the
    ``pymongoose.access`` logger (at INFO); ``root_path``: the scope's ``root_path``;
    ``limits``: the :class:`~pymongoose.Limits` each connection gets (default
    ``Limits()``; raise ``max_body_size`` for uploads over 16 MiB);
    ``ws_compression``: answer a WebSocket client's permessage-deflate offer (True,
    the default), with these :class:`~pymongoose.PerMessageDeflate` options, or never
    (False); the application sees messages inflated either way.

    ``await start(url)`` runs the lifespan startup and listens; ``await serve_forever()``
    serves until :meth:`close`; ``await close()`` stops listening, runs the lifespan
    shutdown, cancels the application tasks still running and closes every connection.
    ``async with ASGIServer(app) as server:`` closes on exit.
    """

    def __init__(self, app: ASGIApp, *, root: Optional[str] = None, access_log: bool = False,
                 root_path: str = "", lifespan: bool = True,
                 limits: Optional[Limits] = None,
                 ws_compression: Union[bool, PerMessageDeflate] = True) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application, not {type(app).__name__}")
        if root is not None:
            root = os.path.realpath(os.fspath(root))
            if not os.path.isdir(root):
                raise FileNotFoundError(f"root {root!r} is not a directory")
        self._app = app
        self._root = root
        self._root_path = root_path
        self._access_log = access_log
        self._limits = limits
        self._ws_compression = ws_deflate_options(ws_compression)
        self._lifespan: Optional[Lifespan] = Lifespan(app) if lifespan else None
        self._amgr: Optional[AsyncManager] = None
        self._listener: Optional[Connection] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ws_tasks: set[asyncio.Task[None]] = set()
        self._closed: Optional[asyncio.Event] = None
        self._state: Optional[dict[str, Any]] = None  # the lifespan's, when it ran
        self._events = _EVENTS if root is None else _EVENTS_WITH_STATIC

    # -- what it is ---------------------------------------------------------------------

    @property
    def manager(self) -> Manager:
        """The Manager that owns the listener and the connections (after start())."""
        if self._amgr is None:
            raise RuntimeError("the server has not been started")
        return self._amgr.manager

    @property
    def url(self) -> str:
        """``http://host:port`` the server listens on (the real port, after start())."""
        listener = self._listener
        addr = listener.local_addr if listener is not None else None
        if addr is None:
            raise RuntimeError("the server is not listening")
        host = f"[{addr[0]}]" if addr[2] else addr[0]
        return f"http://{host}:{addr[1]}"

    @property
    def port(self) -> int:
        """The port the server listens on (after start())."""
        listener = self._listener
        addr = listener.local_addr if listener is not None else None
        if addr is None:
            raise RuntimeError("the server is not listening")
        return addr[1]

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, url: str = "http://127.0.0.1:8000", *,
                    sock: Optional[socket.socket] = None) -> Connection:
        """Run the lifespan startup, then listen on ``url`` (port 0 picks a free one),
        or serve ``sock``, a listening TCP socket bound elsewhere (prefork workers).
        Returns the listener (its ``local_addr`` has the real port), as cymongoose's does.

        Raises :class:`LifespanFailure` when the application reports that its startup
        failed, and :class:`~pymongoose.ListenError` when ``url`` cannot be opened.
        """
        if self._amgr is not None:
            raise RuntimeError("this ASGIServer was already started")
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        if self._lifespan is not None:
            await self._lifespan.startup()
            if self._lifespan.supported:
                self._state = self._lifespan.state
        amgr = self._amgr = AsyncManager(limits=self._limits)
        amgr.start()
        try:
            if sock is not None:
                self._listener = amgr.manager.listen_socket(sock, self._on_event, http=True,
                                                            events=self._events)
            else:
                self._listener = amgr.listen(url, self._on_event, http=True,
                                             events=self._events)
        except BaseException:
            await amgr.close()
            raise
        return self._listener

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` is called (from a task or a signal handler)."""
        if self._closed is None:
            raise RuntimeError("call start() first")
        await self._closed.wait()

    async def close(self, timeout: float = 0.0) -> None:
        """Stop serving: stop accepting, give HTTP requests in flight up to ``timeout``
        seconds to finish, cancel the application tasks left (WebSocket sessions close
        with 1001), run the lifespan shutdown, close the Manager."""
        amgr = self._amgr
        if amgr is None or amgr.closed:
            return
        if self._listener is not None and not self._listener.is_closed:
            self._listener.close()
        if timeout > 0:
            http = [t for t in self._tasks if t not in self._ws_tasks]
            if http:
                await asyncio.wait(http, timeout=timeout)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()  # a task cancelled before it ran never took itself out
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        await amgr.close()
        if self._closed is not None:
            self._closed.set()

    async def stop(self) -> None:
        """cymongoose's name for :meth:`close` (with no grace period)."""
        await self.close()

    async def __aenter__(self) -> ASGIServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- events -------------------------------------------------------------------------

    def _on_event(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_HDRS:
            self._on_request(conn, data)
            return
        peer = conn.userdata
        if peer is None:
            return
        cycle = peer.cycle
        if ev == PYMG_EV_HTTP_BODY:
            cycle.on_body(data)
        elif ev == PYMG_EV_HTTP_BODY_END:
            cycle.on_body_end()
        elif ev == MG_EV_HTTP_MSG:
            if peer.static:
                peer.static = False
                assert self._root is not None
                conn.serve_dir(data, self._root)
        elif cycle is None:
            return
        elif ev == MG_EV_WS_MSG:
            cycle.on_message(data.data, data.op == WEBSOCKET_OP_TEXT)
        elif ev == MG_EV_CLOSE:
            cycle.on_disconnect()
        elif ev == MG_EV_WS_CTL:
            if data.op == WEBSOCKET_OP_CLOSE:
                self._on_close_frame(cycle, data)
        elif ev == MG_EV_WRITE and cycle.on_writable():
            want_writes(conn, False)

    @staticmethod
    def _on_close_frame(cycle: WebSocketCycle, data: WsMessage) -> None:
        payload = data.data
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        reason = payload[2:].decode("utf-8", "replace")
        cycle.on_close_frame(code, reason)

    def _on_request(self, conn: Connection, message: HttpMessage) -> None:
        if _conn_flags(conn._c) & _F_CLOSING:
            # Mongoose hands over what it has when a client leaves mid-request (a body
            # cut short): nobody is left to answer.
            return
        hm = message._live()
        head = _unpack(hm.head.buf, hm.head.len)
        method, raw_path, query, path, version, headers, noted = parse_head(head)
        peer = conn.userdata
        if peer is None:
            peer = conn.userdata = _Peer(conn)
            peer.events = self._events
        root = self._root
        if root is not None and (method == "GET" or method == "HEAD") and \
                self._is_static(path):
            peer.static = True  # Mongoose answers it at MG_EV_HTTP_MSG
            peer.cycle = None
            return
        upgrade = noted[UPGRADE]
        websocket = upgrade is not None and upgrade.lower() == b"websocket"
        scope: dict[str, Any] = {
            "type": "websocket" if websocket else "http",
            "asgi": ASGI_INFO,
            "http_version": version,
            "scheme": ("wss" if peer.is_tls else "ws") if websocket else
                      ("https" if peer.is_tls else "http"),
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": self._root_path,
            "headers": headers,
            "client": peer.client,
            "server": peer.server,
        }
        state = self._state
        if state is not None:
            scope["state"] = state.copy()
        loop = self._loop
        assert loop is not None
        if websocket:
            key = noted[WS_KEY]
            if method != "GET" or not key:
                conn.reply(400, "Bad WebSocket handshake\n", {"Connection": "close"})
                conn.drain()
                return
            protocols = noted[WS_PROTOCOL]
            scope["subprotocols"] = [p.strip().decode("latin-1")
                                     for p in protocols.split(b",")] if protocols else []
            ws = WebSocketCycle(loop, conn, scope, key)
            ws.request_line = f"{method} {raw_path.decode('latin-1')}"
            ws.compression = self._ws_compression
            peer.cycle = ws
            task = loop.create_task(self._run_ws(ws))
            self._ws_tasks.add(task)
            task.add_done_callback(self._ws_tasks.discard)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            scope["method"] = method
            connection = noted[CONNECTION]
            if version == "1.1":
                keep_alive = connection is None or connection.lower() != b"close"
            else:
                keep_alive = connection is not None and connection.lower() == b"keep-alive"
            length = noted[CONTENT_LENGTH]
            body_follows = (length is not None and length != b"0") or \
                noted[TRANSFER_ENCODING] is not None
            if body_follows:
                try:
                    conn.stream_body(message)
                except ValueError as exc:
                    conn.reply(400, f"Bad request: {exc}\n", {"Connection": "close"})
                    peer.cycle = None
                    return
            cycle = HttpCycle(loop, conn, scope, body_follows, keep_alive)
            cycle.log_access = self._access_log
            peer.cycle = cycle
            # _run_http takes its task out of the set as it ends: cheaper than a done
            # callback, which costs a second trip through the loop per request.
            task = cycle.task = loop.create_task(self._run_http(cycle))
            self._tasks.add(task)

    async def _run_http(self, cycle: HttpCycle) -> None:
        try:
            await self._app(cycle.scope, cycle.receive, cycle.send)
        except asyncio.CancelledError:
            cycle.abort()
            raise
        except BaseException as exc:
            report_http(cycle, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if not cycle.complete:
                report_http(cycle, None)
        finally:
            self._tasks.discard(cycle.task)

    async def _run_ws(self, ws: WebSocketCycle) -> None:
        try:
            await self._app(ws.scope, ws.receive, ws.send)
        except asyncio.CancelledError:
            ws.going_away()
            raise
        except BaseException as exc:
            ws.finish(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            ws.finish(None)

    def _is_static(self, path: str) -> bool:
        root = self._root
        assert root is not None
        target = os.path.normpath(os.path.join(root, path.lstrip("/")))
        if target != root and not target.startswith(root + os.sep):
            return False
        if os.path.isfile(target):
            return True
        return os.path.isfile(os.path.join(target, "index.html"))


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (CPython), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return uvloop.new_event_loop()


async def _serve_main(app: ASGIApp, url: str, root: Optional[str], access_log: bool,
                      sock: Optional[socket.socket] = None, graceful_timeout: float = 0.0,
                      announce: bool = True,
                      stopping: Optional[threading.Event] = None) -> None:
    """Serve until SIGINT/SIGTERM. ``stopping``: a prefork worker's flag, which its
    own signal handler sets for a signal that came before the loop's handlers."""
    server = ASGIServer(app, root=root, access_log=access_log)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # not possible outside the main thread: then the caller stops us
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    if stopping is not None and stopping.is_set():  # told to stop while starting up
        stop.set()
    try:
        await server.start(url, sock=sock)
        if announce:
            print(startup_line("ASGI app", server.url, 1), flush=True)
        await stop.wait()
    finally:
        await server.close(graceful_timeout)
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


def _run_loop(main: Any) -> None:
    loop = _new_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _serve_workers(app: ASGIApp, url: str, workers: int, root: Optional[str],
                   access_log: bool) -> None:
    """Prefork: pymongoose.workers binds once and forks; each child runs its own loop,
    lifespan and server on the shared socket. A child whose lifespan startup fails
    tells the parent (through a pipe) and stops them all."""
    from .. import workers as prefork

    failures_r, failures_w = os.pipe()

    def worker_main(ctx: prefork.WorkerContext) -> None:
        os.close(failures_r)
        try:
            _run_loop(_serve_main(app, ctx.url, root, access_log, sock=ctx.sock,
                                  graceful_timeout=ctx.graceful_timeout, announce=False,
                                  stopping=ctx.stopping))
        except LifespanFailure as exc:
            os.write(failures_w, f"{exc}\n".encode("utf-8", "replace"))
            os.kill(os.getppid(), signal.SIGTERM)
            raise

    try:
        code = prefork.run(url, worker_main, workers, on_ready=lambda real_url: print(
            startup_line("ASGI app", real_url, workers), flush=True))
    finally:
        os.close(failures_w)
        with os.fdopen(failures_r, "rb") as failures:
            failed = failures.read().decode("utf-8", "replace").splitlines()
    if failed:
        raise SystemExit(f"ASGI lifespan startup failed: {failed[0]}")
    if code:
        raise SystemExit(code)


def serve(app: ASGIApp, url: str = "http://127.0.0.1:8000", *, workers: int = 1,
          root: Optional[str] = None, access_log: bool = False) -> None:
    """Serve ``app`` at ``url`` until SIGINT or SIGTERM, on uvloop when it is installed.

    Prints the URL it listens on once it is ready. ``workers`` > 1 forks that many
    processes serving one socket (pymongoose.workers), each with its own lifespan; a
    stop lets requests in flight finish. ``root``: static files served before the
    application; ``access_log``: one line per request to ``pymongoose.access`` (the
    logger is given a stderr handler if it has none). A failed lifespan startup exits
    with the application's message and status 1.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, not {workers!r}")
    if access_log:
        import logging

        access = logging.getLogger("pymongoose.access")
        if not access.handlers:
            access.addHandler(logging.StreamHandler(sys.stderr))
        access.setLevel(logging.INFO)
    if workers > 1:
        _serve_workers(app, url, workers, root, access_log)
        return
    try:
        _run_loop(_serve_main(app, url, root, access_log))
    except LifespanFailure as exc:
        raise SystemExit(f"ASGI lifespan startup failed: {exc}") from None
