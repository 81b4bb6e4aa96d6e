"""The WSGI server: WSGIServer, serve(), and the request bodies and responses it
streams between the event loop and the application's threads."""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType, TracebackType
from typing import Any, Callable, Optional
from urllib.parse import unquote_to_bytes

from .._ffi import mg_str_bytes
from .._http_date import http_date
from .._http_target import split_fragment, split_target
from .._startup import startup_line
from ..connection import Connection
from ..constants import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_HTTP_HDRS,
    MG_EV_HTTP_MSG,
    MG_EV_WAKEUP,
    MG_EV_WRITE,
    PYMG_EV_HTTP_BODY,
    PYMG_EV_HTTP_BODY_END,
)
from ..limits import Limits
from ..manager import ErrorHandler, Manager
from ..messages import HttpMessage
from ..workers import WorkerContext
from ..workers import run as run_workers
from ._environ import FileWrapper

__all__ = ["ClientDisconnected", "WSGIServer", "serve"]

_log = logging.getLogger("pymongoose.wsgi")
_access_log = logging.getLogger("pymongoose.access")

ExcInfo = tuple[type[BaseException], BaseException, Optional[TracebackType]]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Request body bytes buffered for the app before the client is made to wait.
INPUT_HIGH_WATER = 1 << 20
#: Response bytes queued for the client before the app's thread is made to wait.
OUTPUT_HIGH_WATER = 4 << 20

_NO_BODY_STATUS = frozenset({204, 304})
#: What the server's handler listens to; MG_EV_WRITE only while a response waits for
#: a slow client.
_EVENTS = (MG_EV_HTTP_HDRS, MG_EV_HTTP_MSG, PYMG_EV_HTTP_BODY, PYMG_EV_HTTP_BODY_END,
           MG_EV_WAKEUP, MG_EV_ERROR, MG_EV_CLOSE)
_EVENTS_WRITING = (*_EVENTS, MG_EV_WRITE)
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                         "proxy-authorization", "te", "trailers", "transfer-encoding",
                         "upgrade"})


class ClientDisconnected(OSError):
    """The request body cannot be read whole: the client closed the connection before
    it was complete, or sent a malformed one (a bad chunk); the message says which."""


_NO_BODY_CONDITION = threading.Condition()


class _Input:
    """``wsgi.input``: the request body as it arrives, read by the app's thread."""

    def __init__(self, request: _Request, has_body: bool) -> None:
        self._request = request
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._eof = not has_body
        self._paused = False  # the loop paused reading: the app thread asks to resume
        self._error: Optional[BaseException] = None
        # A request without a body never waits on its input: it shares one condition
        # rather than paying for its own on every GET.
        self._cond = threading.Condition() if has_body else _NO_BODY_CONDITION

    # -- the loop thread's side -----------------------------------------------------------

    def _feed(self, data: bytes) -> bool:
        """Queue a piece; True when the loop must pause reading (resumed by the app)."""
        with self._cond:
            self._chunks.append(data)
            self._buffered += len(data)
            self._cond.notify_all()
            if self._buffered > INPUT_HIGH_WATER and not self._paused:
                self._paused = True
                return True
            return False

    def _finish(self, error: Optional[BaseException] = None) -> None:
        with self._cond:
            if self._eof:
                return  # the first ending counts: a malformed body, then the close
            self._eof = True
            self._error = error
            self._cond.notify_all()

    # -- the app's side -------------------------------------------------------------------

    def _take(self, size: int, line: bool) -> bytes:
        out = bytearray()
        with self._cond:
            while size < 0 or len(out) < size:
                if not self._chunks:
                    if self._eof:
                        if self._error is not None:
                            raise self._error  # never a silently truncated body
                        break
                    if self._paused:  # all taken, yet the loop waits for us: resume
                        self._paused = False
                        self._request.post(_Request._RESUME)
                    self._cond.wait()
                    continue
                chunk = self._chunks[0]
                want = len(chunk) if size < 0 else min(len(chunk), size - len(out))
                if line:
                    nl = chunk.find(b"\n", 0, want)
                    if nl >= 0:
                        want = nl + 1
                if want == len(chunk):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = chunk[want:]
                    chunk = chunk[:want]
                out += chunk
                self._buffered -= len(chunk)
                if line and chunk.endswith(b"\n"):
                    break
            resume = self._paused and self._buffered < INPUT_HIGH_WATER // 2
            if resume:
                self._paused = False
        if resume:
            self._request.post(_Request._RESUME)
        return bytes(out)

    def read(self, size: Optional[int] = -1) -> bytes:
        """Up to ``size`` bytes of the body (all that is left when -1 or None)."""
        return self._take(-1 if size is None else size, False)

    def readline(self, size: Optional[int] = -1) -> bytes:
        """One line, ``\\n`` included, of at most ``size`` bytes."""
        return self._take(-1 if size is None else size, True)

    def readlines(self, hint: int = -1) -> list[bytes]:
        """The remaining lines (about ``hint`` bytes of them when hint > 0)."""
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _Request:
    """One request: built on the loop thread, run on a pool thread.

    The app thread never touches the Connection: it queues byte strings and actions in
    ``outbox`` and wakes the loop, which sends them.
    """

    def __init__(self, server: WSGIServer, conn: Connection, environ: dict[str, Any],
                 http10: bool, head: bool, client_close: bool, has_body: bool) -> None:
        self.server = server
        self.conn_id = conn.id
        self.environ = environ
        self.http10 = http10
        self.head = head
        self.client_close = client_close
        self.input = _Input(self, has_body)
        environ["wsgi.input"] = self.input
        self.body_done = False  # the request body ended (PYMG_EV_HTTP_BODY_END)
        self.finished = False  # the app's response has been fully queued
        self.closed = False  # the client went away
        self.status: Optional[str] = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.chunked = False
        self.length: Optional[int] = None
        self.sent = 0
        self.keep_alive = True
        self.outbox: collections.deque[tuple[int, Any]] = collections.deque()
        self.outbox_lock = threading.Lock()
        self.wake_pending = False
        self.backlog = 0  # bytes queued for the client, not yet sent
        self.watching_writes = False
        self.flow = server._flow  # shared: app threads wait on it only while a client lags

    # -- from the app thread to the loop ---------------------------------------------------

    _SEND, _END, _RESUME, _ABORT = range(4)

    def post(self, action: int, payload: Any = None) -> None:
        # One wakeup per batch: the loop takes everything queued when it wakes.
        with self.outbox_lock:
            self.outbox.append((action, payload))
            if self.wake_pending:
                return
            self.wake_pending = True
        try:
            self.server.manager.wakeup(self.conn_id, b"")
        except Exception:  # the Manager closed: nobody to send to any more
            self.closed = True

    def take_outbox(self) -> list[tuple[int, Any]]:
        with self.outbox_lock:
            items = list(self.outbox)
            self.outbox.clear()
            self.wake_pending = False
        return items

    def write_bytes(self, data: bytes) -> None:
        if self.closed:
            raise ClientDisconnected("the client closed the connection")
        with self.flow:
            while self.backlog > OUTPUT_HIGH_WATER and not self.closed:
                self.flow.wait(1.0)
            self.backlog += len(data)
        self.post(self._SEND, data)

    # -- the WSGI callables ----------------------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Optional[ExcInfo] = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if not isinstance(status, str):
            raise TypeError(f"status must be str, not {type(status).__name__}")
        code = status.split(" ", 1)[0]
        if len(code) != 3 or not code.isdigit() or "\r" in status or "\n" in status:
            raise ValueError(f"invalid status {status!r}: expected e.g. '200 OK'")
        if not isinstance(headers, list):
            raise TypeError(f"headers must be a list, not {type(headers).__name__}")
        for item in headers:
            if not (isinstance(item, tuple) and len(item) == 2
                    and isinstance(item[0], str) and isinstance(item[1], str)):
                raise TypeError(f"each header must be a (str, str) tuple, not {item!r}")
            name, value = item
            if "\n" in value or "\r" in value or not _is_token(name):
                raise ValueError(f"invalid header {item!r}")
            lower = name.lower()
            if lower in _HOP_BY_HOP and lower != "connection":
                raise ValueError(f"the app must not set the hop-by-hop header {name}")
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable that start_response returns."""
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        self.send_body(bytes(data), final=False)

    # -- response framing ------------------------------------------------------------------

    def status_code(self) -> int:
        return int(self.status.split(" ", 1)[0]) if self.status else 500

    def head_bytes(self, known_length: Optional[int]) -> bytes:
        """The status line and headers, framing decided; sent with the first piece."""
        code = self.status_code()
        lines = [f"HTTP/1.1 {self.status}\r\n"]
        has_length = dated = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == "content-length":
                has_length = True
                self.length = int(value) if value.strip().isdigit() else None
            elif lower == "date":
                dated = True
            elif lower == "connection":
                if value.strip().lower() == "close":
                    self.keep_alive = False
                continue
            lines.append(f"{name}: {value}\r\n")
        if not dated:
            lines.append(f"Date: {http_date()}\r\n")
        bodiless = code < 200 or code in _NO_BODY_STATUS
        if self.client_close or self.server.stopping:
            self.keep_alive = False
        if not has_length and not bodiless:
            if known_length is not None:
                self.length = known_length
                lines.append(f"Content-Length: {known_length}\r\n")
            elif self.http10:
                self.keep_alive = False  # the body ends when the connection does
            elif not self.head:
                self.chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
        if self.http10 and self.keep_alive:
            lines.append("Connection: keep-alive\r\n")
        elif not self.keep_alive:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        self.headers_sent = True
        return "".join(lines).encode("latin-1")

    def send_body(self, data: bytes, final: bool) -> None:
        head = b""
        if not self.headers_sent:
            if not data and not final:
                return  # headers wait for the first non-empty piece (PEP 3333)
            head = self.head_bytes(len(data) if final else None)
        if not data or self.head or self.status_code() in _NO_BODY_STATUS:
            data = b""
        else:
            if self.length is not None:
                data = data[:max(0, self.length - self.sent)]  # never more than announced
            self.sent += len(data)
            if self.chunked and data:
                data = b"%x\r\n%s\r\n" % (len(data), data)
        if head or data:
            self.write_bytes(head + data)  # head and first piece: one write, one wakeup

    def finish(self) -> None:
        tail = b"0\r\n\r\n" if self.chunked else b""
        if self.length is not None and self.sent < self.length and not self.head:
            self.keep_alive = False  # the app sent less than it announced
            _log.error("%s %s: the app sent %d of %d announced bytes",
                       self.environ["REQUEST_METHOD"], self.environ["PATH_INFO"],
                       self.sent, self.length)
        if tail:
            self.write_bytes(tail)
        self.finished = True
        self.post(self._END, self.keep_alive)

    # -- running the app (pool thread) -----------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        try:
            self.call_app()
        except ClientDisconnected:
            pass  # reported once, when the connection closed
        except Exception:
            _log.exception("unexpected error serving %s %s", self.environ["REQUEST_METHOD"],
                           self.environ["PATH_INFO"])
            self.post(self._ABORT)
        if self.server.access_log:
            self.log_access(time.monotonic() - started)

    def call_app(self) -> None:
        try:
            result = self.server.app(self.environ, self.start_response)
        except ClientDisconnected:
            raise
        except Exception:
            _log.exception("WSGI app raised on %s %s", self.environ["REQUEST_METHOD"],
                           self.environ["PATH_INFO"])
            self.fail()
            return
        try:
            if isinstance(result, (str, bytes, bytearray)) or not _is_iterable(result):
                raise TypeError("the WSGI app must return an iterable of bytes (e.g. "
                                f"[b'...']), not {type(result).__name__}")
            if isinstance(result, (list, tuple)) and len(result) == 1:
                piece = result[0]
                if not isinstance(piece, bytes):
                    raise TypeError(f"the app yielded {type(piece).__name__}, not bytes")
                self.require_started()
                self.send_body(piece, final=True)
            else:
                for piece in result:
                    if not isinstance(piece, bytes):
                        raise TypeError(f"the app yielded {type(piece).__name__}, not bytes")
                    self.require_started()
                    self.send_body(piece, final=False)
                self.require_started()
                self.send_body(b"", final=True)
        except ClientDisconnected:
            raise
        except Exception:
            _log.exception("WSGI app failed on %s %s", self.environ["REQUEST_METHOD"],
                           self.environ["PATH_INFO"])
            self.fail()
            return
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    _log.exception("the app's iterable raised in close()")
        self.finish()

    def require_started(self) -> None:
        if self.status is None:
            raise AssertionError("the app returned data before calling start_response()")

    def fail(self) -> None:
        """500 when nothing was sent yet; otherwise the response is cut short."""
        if self.headers_sent:
            self.post(self._ABORT)
            return
        self.status = "500 Internal Server Error"
        self.headers = [("Content-Type", "text/plain; charset=utf-8")]
        self.keep_alive = self.keep_alive and self.body_done
        self.send_body(b"Internal Server Error\n", final=True)
        self.finish()

    def log_access(self, elapsed: float) -> None:
        env = self.environ
        query = env.get("QUERY_STRING")
        target = env.get("RAW_URI") or env["PATH_INFO"] + ("?" + query if query else "")
        _access_log.info('%s - - [%s] "%s %s %s" %d %d %.1fms', env.get("REMOTE_ADDR", "-"),
                         time.strftime("%d/%b/%Y:%H:%M:%S %z"), env["REQUEST_METHOD"],
                         target, env["SERVER_PROTOCOL"], self.status_code(), self.sent,
                         elapsed * 1000)


class _AppThreads:
    """The app's thread pool: ``threads`` threads taking requests from one queue.

    Leaner than ``concurrent.futures.ThreadPoolExecutor`` (no Future per request, no
    per-submit bookkeeping), which shows at tens of thousands of requests a second.
    Threads start as requests need them, up to ``size``.
    """

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[Optional[_Request]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting on the queue that no request has claimed yet
        self._lock = threading.Lock()

    def submit(self, request: _Request) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # a waiting thread takes it
            elif len(self._threads) < self._size:  # all busy: one more thread
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._name}_{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
            # else every thread is busy: the request waits for the first one free
        self._queue.put(request)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            request = get()
            if request is None:
                return
            try:
                request.run()
            except BaseException:  # SystemExit and the like: the thread serves on
                _log.exception("the WSGI app's thread caught an exception")
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let each thread finish its request, then end (without waiting for them)."""
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
            self._size = 0


#: RFC 9110 token characters: what a header name may be made of.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_token_cache: dict[str, bool] = {}


def _is_token(name: str) -> bool:
    """True for a valid header name (remembered: apps send the same few names)."""
    known = _token_cache.get(name)
    if known is None:
        known = bool(name) and _TOKEN_CHARS.issuperset(name)
        if len(_token_cache) < 1024:
            _token_cache[name] = known
    return known


def _is_iterable(obj: object) -> bool:
    try:
        iter(obj)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


class WSGIServer:
    """A WSGI server in this process: ``listen()`` (or ``listen_socket()``), ``run()``,
    ``close()``.

    ``threads`` (or ``workers``, cymongoose's positional name for it) is the size of
    the app's thread pool (:func:`serve`'s ``workers`` are processes). ``error_handler``:
    the Manager's, for exceptions in the loop itself (the app's go to the log). ``root``: a
    directory Mongoose serves files from first (GET and HEAD), the app gets the rest.
    ``access_log``: one line per request to the ``pymongoose.access`` logger (INFO).
    ``limits``: the :class:`~pymongoose.Limits` each connection gets (default
    ``Limits()``; raise ``max_body_size`` for uploads over 16 MiB).
    """

    def __init__(self, app: WSGIApp, workers: Optional[int] = None, *, threads: int = 8,
                 root: Optional[str] = None, access_log: bool = False,
                 multiprocess: bool = False, limits: Optional[Limits] = None,
                 error_handler: Optional[ErrorHandler] = None) -> None:
        if workers is not None:  # cymongoose's WSGIServer(app, workers): the thread pool
            threads = workers
        if not callable(app):
            raise TypeError(f"app must be a WSGI callable, not {type(app).__name__}")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, not {threads!r}")
        if root is not None and not os.path.isdir(root):
            raise FileNotFoundError(f"root {root!r} is not a directory")
        self.app = app
        self.threads = threads
        self.root = os.path.abspath(root) if root is not None else None
        self.access_log = access_log
        self.multiprocess = multiprocess
        self.stopping = False
        self._manager = Manager(self._handle, enable_wakeup=True, events=_EVENTS, limits=limits,
                                error_handler=error_handler)
        self._pool = _AppThreads(threads, "pymongoose-wsgi")
        self._requests: dict[int, _Request] = {}
        self._flow = threading.Condition()
        self._peers: dict[int, dict[str, str]] = {}  # per connection: its REMOTE_* keys
        self._base_environ: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_SOFTWARE": "pymongoose",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.multithread": True,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }

    @property
    def manager(self) -> Manager:
        """The Manager whose loop serves the requests."""
        return self._manager

    def listen(self, url: str = "http://127.0.0.1:8000") -> Connection:
        """Listen on ``url``; returns the listener (``local_addr`` has the real port)."""
        listener = self._manager.listen(url, http=True)
        self._note_address(listener)
        return listener

    def listen_socket(self, sock: Any) -> Connection:
        """Serve an already bound, listening socket (see Manager.listen_socket)."""
        listener = self._manager.listen_socket(sock)
        self._note_address(listener)
        return listener

    def _note_address(self, listener: Connection) -> None:
        addr = listener.local_addr
        if addr is not None:
            self._base_environ["SERVER_NAME"] = addr[0]
            self._base_environ["SERVER_PORT"] = str(addr[1])

    def run(self, poll_ms: int = 100, *, stop: Optional[threading.Event] = None,
            graceful_timeout: float = 30.0) -> None:
        """Serve until SIGINT/SIGTERM (from the main thread) or ``stop`` is set, then
        stop gracefully: in-flight requests get up to ``graceful_timeout`` seconds."""
        stop_event = stop if stop is not None else threading.Event()
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: Optional[FrameType]) -> None:
            stop_event.set()

        if stop is None and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            while not stop_event.is_set() and not self._manager.closed:
                self._manager.poll(poll_ms)
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            self.close(graceful_timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout`` s), close."""
        self.stopping = True
        if not self._manager.closed:
            self._manager.shutdown(timeout)
        for request in self._requests.values():
            request.closed = True
            request.input._finish(ClientDisconnected("the server is closing"))
            with request.flow:
                request.flow.notify_all()
        self._requests.clear()
        self._pool.shutdown()

    # -- the loop thread -------------------------------------------------------------------

    def _handle(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == PYMG_EV_HTTP_BODY:
            request = self._requests.get(conn.id)
            if request is not None and request.input._feed(data):
                conn.pause_reading()
        elif ev == MG_EV_WAKEUP:
            self._flush(conn)
        elif ev == MG_EV_WRITE:
            request = self._requests.get(conn.id)
            if request is not None:
                self._update_backlog(conn, request)
        elif ev == MG_EV_HTTP_HDRS:
            self._start(conn, data)
        elif ev == PYMG_EV_HTTP_BODY_END:
            request = self._requests.get(conn.id)
            if request is not None:
                request.body_done = True
                request.input._finish()
        elif ev == MG_EV_HTTP_MSG:
            # Only static files get here (see _start); everything else was streamed.
            assert self.root is not None
            conn.serve_dir(data, self.root)
        elif ev == MG_EV_ERROR:
            request = self._requests.get(conn.id)
            if request is not None and not request.body_done:
                request.input._finish(ClientDisconnected(
                    f"the request body is malformed ({data}); the connection is closed"))
        elif ev == MG_EV_CLOSE:
            self._peers.pop(conn.id, None)
            request = self._requests.pop(conn.id, None)
            if request is not None:
                request.closed = True
                if not request.body_done:
                    _log.warning("client %s closed the connection before the request body "
                                 "of %s %s ended", request.environ.get("REMOTE_ADDR"),
                                 request.environ["REQUEST_METHOD"],
                                 request.environ["PATH_INFO"])
                    request.input._finish(ClientDisconnected(
                        "the client closed the connection before the body ended"))
                with request.flow:
                    request.flow.notify_all()

    def _is_static(self, hm: HttpMessage) -> bool:
        if self.root is None or hm.method not in ("GET", "HEAD"):
            return False
        path = unquote_to_bytes(mg_str_bytes(hm._live().uri)).decode("utf-8", "replace")
        full = os.path.normpath(os.path.join(self.root, path.lstrip("/")))
        if not (full == self.root or full.startswith(self.root + os.sep)):
            return False
        return os.path.isfile(full) or os.path.isfile(os.path.join(full, "index.html"))

    def _start(self, conn: Connection, hm: HttpMessage) -> None:
        if conn.id in self._requests or self._is_static(hm):
            return  # a static file: Mongoose answers at MG_EV_HTTP_MSG
        environ = self._environ(conn, hm)
        proto = environ["SERVER_PROTOCOL"]
        connection = (environ.get("HTTP_CONNECTION") or "").lower()
        http10 = proto == "HTTP/1.0"
        client_close = "close" in connection or (http10 and "keep-alive" not in connection)
        try:
            conn.stream_body(hm)
        except ValueError as exc:
            conn.reply(400, f"Bad Request: {exc}\n", {"Connection": "close"})
            return
        has_body = (environ.get("CONTENT_LENGTH", "0") not in ("0", "")
                    or "HTTP_TRANSFER_ENCODING" in environ)
        request = _Request(self, conn, environ, http10, environ["REQUEST_METHOD"] == "HEAD",
                           client_close, has_body)
        self._requests[conn.id] = request
        self._pool.submit(request)

    def _environ(self, conn: Connection, hm: HttpMessage) -> dict[str, Any]:
        raw = hm._live()
        uri = mg_str_bytes(raw.uri)
        query = mg_str_bytes(raw.query) if raw.query.len else b""
        authority = None
        if not uri.startswith(b"/"):
            uri, authority = split_target(uri)
        if b"#" in uri or b"#" in query:  # a fragment is not sent, but if it is: dropped
            uri, query = split_fragment(uri, query)
        environ = self._base_environ.copy()  # the keys every request has the same
        environ["REQUEST_METHOD"] = mg_str_bytes(raw.method).decode("latin-1")
        environ["PATH_INFO"] = unquote_to_bytes(uri).decode("latin-1") if b"%" in uri \
            else uri.decode("latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
        environ["RAW_URI"] = (uri + b"?" + query if query else uri).decode("latin-1")
        environ["SERVER_PROTOCOL"] = mg_str_bytes(raw.proto).decode("latin-1") or "HTTP/1.0"
        environ["wsgi.errors"] = sys.stderr
        peer = self._peers.get(conn.id)
        if peer is None:  # the first request on this connection
            remote = conn.remote_addr
            peer = self._peers[conn.id] = {
                "REMOTE_ADDR": remote[0], "REMOTE_PORT": str(remote[1]),
            } if remote is not None else {}
            if conn.is_tls:
                peer["wsgi.url_scheme"] = "https"
        environ.update(peer)
        for name, value in hm.headers():
            if "_" in name:
                continue  # Foo_Bar would pose as Foo-Bar: dropped, as other servers do
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                environ[key] = value
                continue
            key = "HTTP_" + key
            environ[key] = environ[key] + "," + value if key in environ else value
        if authority is not None:  # RFC 9112 3.2.2: the target's authority, not Host
            environ["HTTP_HOST"] = authority
        return environ

    def _flush(self, conn: Connection) -> None:
        request = self._requests.get(conn.id)
        if request is None:
            return
        for action, payload in request.take_outbox():
            if action == _Request._SEND:
                conn.send(payload)
            elif action == _Request._END:
                # A body the app left unread is not worth reading: close after this.
                request.keep_alive = bool(payload) and request.body_done
                self._retire(conn, request)
                return
            elif action == _Request._RESUME:
                if not conn.is_closing:
                    conn.resume_reading()
            elif action == _Request._ABORT:
                request.closed = True
                conn.close()
                return
        self._update_backlog(conn, request)

    def _update_backlog(self, conn: Connection, request: _Request) -> None:
        """Tell a waiting app thread how much is queued; watch MG_EV_WRITE only while
        the client is behind (most responses never need it)."""
        backlog = conn.send_len
        with request.flow:
            request.backlog = backlog
            if backlog <= OUTPUT_HIGH_WATER:
                request.flow.notify_all()
        watching = request.watching_writes
        if (backlog > OUTPUT_HIGH_WATER) != watching:
            request.watching_writes = not watching
            conn.set_handler(self._handle, events=_EVENTS_WRITING if not watching
                             else _EVENTS)

    def _retire(self, conn: Connection, request: _Request) -> None:
        """The response is queued: the connection takes its next request, or closes."""
        if self._requests.get(conn.id) is request:
            del self._requests[conn.id]
        if request.watching_writes:
            request.watching_writes = False
            conn.set_handler(self._handle, events=_EVENTS)
        conn.http_end()
        if not request.keep_alive:
            conn.drain()


def serve(app: WSGIApp, url: str = "http://127.0.0.1:8000", *, workers: int = 1,
          threads: int = 8, root: Optional[str] = None, access_log: bool = False,
          graceful_timeout: float = 30.0,
          on_ready: Optional[Callable[[str], object]] = None) -> int:
    """Serve ``app`` at ``url`` until SIGINT or SIGTERM; returns an exit status.

    ``workers``: processes (prefork, :mod:`pymongoose.workers`; 1 serves in this
    process). ``threads``: the app's thread pool in each process. ``root``: static
    files served by Mongoose before the app. ``access_log``: one line per request to
    the ``pymongoose.access`` logger. ``on_ready(real_url)`` is called once listening
    (default: print ``Serving WSGI app at URL/ (N workers, T threads each)``).
    """
    if on_ready is None:
        def on_ready(real_url: str) -> None:
            print(startup_line("WSGI app", real_url, workers, f"{threads} threads each"),
                  flush=True)
    if access_log:
        _enable_access_log()
    if workers == 1:
        server = WSGIServer(app, threads=threads, root=root, access_log=access_log)
        try:
            listener = server.listen(url)
        except BaseException:
            server.close(0)
            raise
        addr = listener.local_addr
        assert addr is not None
        host = f"[{addr[0]}]" if addr[2] else addr[0]
        on_ready(f"http://{host}:{addr[1]}")
        server.run(graceful_timeout=graceful_timeout)
        return 0

    def worker_main(ctx: WorkerContext) -> None:
        server = WSGIServer(app, threads=threads, root=root, access_log=access_log,
                            multiprocess=True)
        server.listen_socket(ctx.sock)
        ctx.sock.close()
        server.run(stop=ctx.stopping, graceful_timeout=ctx.graceful_timeout)

    return run_workers(url, worker_main, workers, graceful_timeout=graceful_timeout,
                       on_ready=on_ready)


def _enable_access_log() -> None:
    """Give ``pymongoose.access`` a stderr handler when logging is not configured."""
    if not _access_log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _access_log.addHandler(handler)
    if _access_log.level == logging.NOTSET or _access_log.level > logging.INFO:
        _access_log.setLevel(logging.INFO)

