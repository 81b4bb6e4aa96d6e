"""Manager: one Mongoose event loop and the connections it owns."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import signal
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from . import _dispatch, dns, sntp
from ._dispatch import _UNSHARED_REFS, _getrefcount, refcount
from ._ffi import NULL, ffi, lib, mg_str_bytes
from ._handler_failure import answer_failed_request
from ._interest import ALL_EVENTS, interest_mask, mask_events
from ._mglog import repeated_by_exception
from .connection import Connection, EventHandler, format_headers
from .constants import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_MQTT_CMD,
    MG_EV_MQTT_MSG,
    MG_EV_MQTT_OPEN,
    MG_EV_SNTP_TIME,
    MG_EV_WAKEUP,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    MG_LL_ERROR,
    PYMG_EV_HTTP_BODY,
    event_name,
)
from .errors import (
    ConnectError,
    ListenError,
    ManagerClosedError,
    UnknownSchemeError,
    WrongThreadError,
)
from .limits import Limits, apply_limits
from .messages import HttpMessage, QueuedWsMessage, WsMessage, _MessageView
from .mqtt import MQTT_MAX_PACKET_SIZE, MqttMessage, MqttProperties
from .mqtt import client as _mqtt
from .timers import Timer, TimerCallback
from .tls import TlsOpts

if TYPE_CHECKING:
    from .ws_deflate import PerMessageDeflate

__all__ = ["ALL_EVENTS", "Manager", "interest_mask"]

_log = logging.getLogger("pymongoose")

ErrorHandler = Callable[[BaseException], Any]

_HTTP_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_KNOWN_SCHEMES = _HTTP_SCHEMES | {"tcp", "udp", "tls", "ssl", "mqtt", "mqtts"}
_slots = itertools.count(1)

# Hot-path C functions, looked up once (attribute access on ``lib`` is not free).
_pymg_poll = lib.pymg_poll
_unpack = ffi.unpack
_buffer = ffi.buffer


def _queue_ints(queue: Any, count: int) -> list[int]:
    """The first ``count`` numbers of C's event queue. On CPython a memoryview's
    tolist() makes them in less than half of ffi.unpack's time; on PyPy, whose JIT
    turns indexing into plain loads, a comprehension is twice as fast as either."""
    return memoryview(_buffer(queue, 8 * count)).cast("Q").tolist()


if _getrefcount is None:  # PyPy
    def _queue_ints(queue: Any, count: int) -> list[int]:
        return [queue[i] for i in range(count)]


class _NoConnection:
    """Stands for "no connection yet" in Manager._drain: its ``_c`` is None, as a closed
    connection's is."""

    _c = None


_NO_CONNECTION = _NoConnection()

# Mongoose logs to stdout at DEBUG level unless told otherwise.
lib.pymg_log_init(MG_LL_ERROR)
lib.pymg_log_to_python(1)  # into the "pymongoose.mongoose" logger (see _dispatch)


def _check_limits(limits: object) -> Limits:
    """``limits`` if it is a Limits, else a TypeError saying what was expected."""
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a pymongoose.Limits, not {type(limits).__name__}")
    return limits


def _error_text(ev_data: Any) -> str:
    return ffi.string(ffi.cast("char *", ev_data)).decode("utf-8", "replace")  # type: ignore[no-any-return]


def _wakeup_bytes(ev_data: Any) -> bytes:
    return mg_str_bytes(ffi.cast("struct mg_str *", ev_data))


def _first_int(ctype: str) -> Callable[[Any], int]:
    def convert(ev_data: Any) -> int:
        return int(ffi.cast(ctype, ev_data)[0])
    return convert


#: Numbers per queued event (csrc/glue.h): connection id, event, arena end, flags.
_QUEUE_ENTRY: int = lib.PYMG_QUEUE_ENTRY

#: Events whose ``data`` is a message view, and the view class (MG_EV_HTTP_MSG and
#: MG_EV_HTTP_HDRS are lent their HttpMessage by the dispatcher itself).
_VIEW_EVENTS: dict[int, type[_MessageView]] = {
    MG_EV_WS_OPEN: HttpMessage,
    MG_EV_WS_MSG: WsMessage,
    MG_EV_WS_CTL: WsMessage,
    MG_EV_MQTT_CMD: MqttMessage,
    MG_EV_MQTT_MSG: MqttMessage,
}

#: How the other events' ``ev_data`` becomes the handler's ``data`` (absent: None).
_EVENT_DATA: dict[int, Callable[[Any], Any]] = {
    MG_EV_ERROR: _error_text,
    MG_EV_WAKEUP: _wakeup_bytes,
    PYMG_EV_HTTP_BODY: _wakeup_bytes,  # a piece of a streamed body: an mg_str too
    MG_EV_MQTT_OPEN: _first_int("uint8_t *"),  # Mongoose passes the CONNACK byte
    MG_EV_SNTP_TIME: _first_int("uint64_t *"),
}



def _free_unclosed(m: Any, slot: int, dns_buffer: Any) -> None:
    """Free the C side of a Manager collected without close() (its weakref finalizer).

    Its connections close without events reaching Python: the Manager is gone.
    ``dns_buffer`` is only held so that it outlives the C side that points into it.
    """
    _dispatch.MANAGERS.pop(slot, None)
    lib.pymg_manager_free(m)
    warnings.warn("a pymongoose Manager was garbage-collected without close(); its "
                  "connections were closed and its memory freed", ResourceWarning,
                  stacklevel=2)


def _check_timeout(timeout_ms: object) -> None:
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool):
        raise TypeError(f"timeout_ms must be int, not {type(timeout_ms).__name__}")
    if timeout_ms < 0:
        raise ValueError(f"timeout_ms must be >= 0, not {timeout_ms}")


def _check_url(url: object, what: str) -> tuple[str, bytes]:
    if not isinstance(url, str):
        raise TypeError(f"{what} URL must be str, not {type(url).__name__}")
    if not url or "\0" in url or any(ch.isspace() for ch in url):
        raise ValueError(f"{what} URL {url!r} is empty or contains spaces or NUL")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme and scheme not in _KNOWN_SCHEMES:
        # "Failed to listen": the words cymongoose's listen() used for it.
        where = f"Failed to listen on {url!r}" if what == "listen" else f"{what} URL {url!r}"
        raise UnknownSchemeError(
            f"{where}: unknown scheme {scheme!r} (use one of {', '.join(sorted(_KNOWN_SCHEMES))})"
        )
    # Mongoose reads "http://" as 0.0.0.0:80 and wraps ports above 65535 silently.
    host_port = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if not host_port:
        raise ValueError(f"{what} URL {url!r} has no address (e.g. http://127.0.0.1:8000)")
    after_host = host_port.rsplit("]", 1)[-1]  # past an IPv6 literal's colons
    if ":" in after_host:
        port = after_host.rpartition(":")[2]
        if not (port.isascii() and port.isdigit() and int(port) <= 65535):
            raise ValueError(f"{what} URL {url!r}: the port must be a number from 0 to 65535")
    return scheme, url.encode("utf-8")


def _url_host(raw_url: bytes) -> bytes:
    """The host of a URL, as a TLS client's default server name (no IPv6 brackets)."""
    host = lib.mg_url_host(raw_url)
    return mg_str_bytes(host).strip(b"[]")


def _check_tls(tls: object, client: bool) -> Optional[TlsOpts]:
    """``tls`` checked before a connection is opened with it (tls_init checks again)."""
    if tls is None:
        return None
    if not isinstance(tls, TlsOpts):
        raise TypeError(f"tls must be a TlsOpts, not {type(tls).__name__}")
    if client:
        tls._check_client()
    else:
        tls._check_server()
    return tls


def _wants_http(scheme: str, http: Optional[bool], url: str) -> bool:
    if http is None:
        return scheme in _HTTP_SCHEMES
    if http and scheme == "udp":
        raise ValueError(f"{url!r}: HTTP does not run over UDP")
    return bool(http)


class Manager:
    """A Mongoose event loop: opens connections and routes their events to handlers.

    ``handler(conn, ev, data)`` receives the events of every connection that has no
    handler of its own. ``events`` (keyword only) limits which MG_EV_* codes reach it;
    the others are dropped in C, which is the fast path. ``error_handler(exc)`` receives
    exceptions raised by handlers; without it they are logged to the ``pymongoose``
    logger with their traceback. Either way the loop keeps running. ``limits`` (a
    :class:`Limits`, default ``Limits()``) applies to every HTTP listener it opens.

    Without ``events``, a handler whose body is one ``if ev == MG_EV_...``/``elif``
    chain without ``else`` gets only the events it tests, read from its source (see
    :func:`pymongoose.inferred_events`); ``events=ALL_EVENTS`` routes every event to
    one handler, ``infer_events=False`` to every handler of this Manager.

    A Manager and its connections belong to the thread that polls it; from other threads
    use :meth:`wakeup` (with ``enable_wakeup=True``), :meth:`close` or
    :meth:`Timer.cancel`. Other Manager calls from another thread while one polls raise
    :class:`WrongThreadError`.

    ``dns_server`` (``udp://IP:port``) is the server host names are looked up with
    (default: the first nameserver of /etc/resolv.conf), ``dns_timeout_ms`` how long a
    lookup may take (default 3000).
    """

    def __init__(self, handler: Optional[EventHandler] = None, enable_wakeup: bool = False,
                 error_handler: Optional[ErrorHandler] = None, *,
                 events: Optional[Iterable[int]] = None, dns_server: Optional[str] = None,
                 dns_timeout_ms: Optional[int] = None,
                 limits: Optional[Limits] = None, infer_events: bool = True) -> None:
        self._dns_server = (dns.check_server(dns_server) if dns_server is not None
                            else dns.system_server() or dns.DEFAULT_SERVER)
        if dns_timeout_ms is not None:
            dns.check_timeout(dns_timeout_ms)
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if error_handler is not None and not callable(error_handler):
            raise TypeError(f"error_handler must be callable, not {type(error_handler).__name__}")
        self._handler = handler
        self._infer_events = bool(infer_events)
        self._interest = interest_mask(handler, events, infer=self._infer_events)
        self._error_handler = error_handler
        self._limits = _check_limits(limits) if limits is not None else Limits()
        self._conns: dict[int, Connection] = {}
        self._timers: dict[int, Timer] = {}  # active ones: they keep their callbacks alive
        self._timer_ids = itertools.count(1)
        # One reusable view per class; replaced when a handler keeps a reference.
        self._views: dict[type[_MessageView], _MessageView] = {}
        self._http_view: Optional[HttpMessage] = None  # MG_EV_HTTP_MSG's, kept apart
        self._ws_view: Optional[QueuedWsMessage] = None  # queued MG_EV_WS_MSG's
        self._opening: tuple[Optional[EventHandler], int] = (None, 0)
        self._depth = 0  # > 0 while C is inside a call that may dispatch events
        self._polling = False
        self._closing = False
        self._close_requested = False
        # Called (when set) after a method queued work that only a poll carries out:
        # data to send, a close, a new connection. pymongoose.aio uses it to poll soon
        # instead of at its next tick; it ignores calls made during poll(). None (the
        # default) costs the senders one attribute check.
        self._on_work_queued: Optional[Callable[[], Any]] = None
        self._slot = next(_slots)
        m = lib.pymg_manager_new(self._slot, 1 if enable_wakeup else 0)
        if m == NULL:
            raise OSError(errno.ENOMEM, "cannot create a Mongoose manager"
                          + (" (the wakeup socket pair failed)" if enable_wakeup else ""))
        self._m: Any = m
        self._queue: Any = lib.pymg_queue_items(m)
        self._arena: Any = lib.pymg_queue_arena(m)
        self._dns_buffer: Any = dns.configure(lib.pymg_manager_mgr(m), self._dns_server,
                                              dns_timeout_ms)
        self._wakeup_enabled = bool(enable_wakeup)
        _dispatch.MANAGERS[self._slot] = weakref.ref(self)
        # Dropped without close(): the C side is freed when the garbage collector
        # takes the Manager (nothing can be polling it then). Not at exit, though.
        self._finalizer = weakref.finalize(self, _free_unclosed, m, self._slot,
                                           self._dns_buffer)
        self._finalizer.atexit = False

    # -- event routing (called from _dispatch) ------------------------------------------

    def _adopt(self, conn_id: int, c: Any = None) -> Connection:
        """Wrap a connection Python has not seen yet (by default: the one in an event).

        Accepted connections take their listener's handler; Mongoose gave them a copy
        of its routing when it accepted them.
        """
        if c is None:
            c = lib.pymg_event_conn(self._m)
        origin = lib.pymg_origin_id(c)
        if origin:
            listener = self._conns.get(origin)
            if listener is not None:
                handler, interest = listener._handler, listener._interest
            else:  # the listener closed meanwhile: fall back to the Manager's handler
                handler, interest = self._handler, self._interest
                lib.pymg_set_interest(c, interest)
        else:
            handler, interest = self._opening
        conn = Connection(self, c, handler, interest)
        self._conns[conn_id] = conn
        lib.pymg_mark_wrapped(c)
        return conn

    def _dispatch(self, conn: Connection, ev: int, ev_data: Any) -> None:
        """Deliver one event C sent directly (the dispatcher inlines HTTP_MSG and HTTP_HDRS)."""
        handler = conn._handler
        if ev == MG_EV_CLOSE:
            # C sends CLOSE for every wrapped connection, wanted or not.
            del self._conns[conn._id]
            if handler is not None and (conn._interest >> MG_EV_CLOSE) & 1:
                self._call(handler, conn, ev, None)
            c = conn._c
            conn._detach(lib.pymg_conn_flags(c) if c is not None else 0)
            return
        if handler is None:
            return
        view_class = _VIEW_EVENTS.get(ev)
        if view_class is None:
            convert = _EVENT_DATA.get(ev)
            self._call(handler, conn, ev,
                       convert(ev_data) if convert is not None and ev_data != NULL else None)
            return
        # The hot path: lend the handler a view over C's message, then take it back.
        # Taken out of the cache while lent, so a nested event (ws_upgrade fires
        # MG_EV_WS_OPEN) gets a view of its own.
        view = self._views.pop(view_class, None)
        if view is None:
            view = view_class()
        view._raw = ev_data
        try:
            handler(conn, ev, view)
        except Exception as exc:
            self._report(exc, conn, ev)
        finally:
            view._raw = view._typed = None
            if _getrefcount is not None and _getrefcount(view) <= _UNSHARED_REFS:
                self._views[view_class] = view  # nobody kept it: reuse it next time

    def _drain(self, count: int) -> None:
        """Deliver ``count`` events C queued, in the order they happened.

        Most carry no data; queued WebSocket messages come with a view over C's copy
        of the message, valid (as always) only while their handler runs.
        """
        flat = _queue_ints(self._queue, 1 + _QUEUE_ENTRY * count)  # before any handler runs
        arena_used = flat[0]
        payloads = _unpack(self._arena, arena_used) if arena_used else b""
        entries = iter(flat)
        next(entries)
        # One view for the batch while no handler keeps it (and not on PyPy, where
        # there is no reference count to tell); taken out of the Manager's slot so that
        # a nested drain gets its own. It expires when the batch is done.
        view = self._ws_view
        if view is not None:
            self._ws_view = None
            view._renew()
        else:
            view = QueuedWsMessage()
        conn: Any = _NO_CONNECTION
        last_id = start = 0
        ws_msg = MG_EV_WS_MSG
        for conn_id, ev, end, flags in zip(entries, entries, entries, entries):
            begin, start = start, end  # a message's payload: from the previous end to its own
            if conn_id != last_id or conn._c is None:  # a new one, or it closed meanwhile
                conn = self._conns.get(conn_id)
                if conn is None:
                    c = lib.pymg_find_conn(self._m, conn_id)
                    if c == NULL:
                        last_id = 0
                        continue
                    conn = self._adopt(conn_id, c)
                last_id = conn_id
            handler = conn._handler
            if handler is None:
                continue
            if ev != ws_msg:
                try:
                    handler(conn, ev, None)
                except Exception as exc:
                    self._report(exc, conn, ev)
                continue
            view.data = payloads[begin:end]
            view.flags = flags
            try:
                handler(conn, ev, view)
            except Exception as exc:
                self._report(exc, conn, ev)
            except BaseException:
                view._expire()
                raise
            if refcount(view) > _UNSHARED_REFS:
                view._expire()  # kept by the handler: it expires now, the next gets a new one
                view = QueuedWsMessage()
        view._expire()
        self._ws_view = view

    def _call(self, handler: EventHandler, conn: Connection, ev: int, data: Any) -> None:
        try:
            handler(conn, ev, data)
        except Exception as exc:
            self._report(exc, conn, ev)

    def _report(self, exc: Exception, conn: Connection, ev: int) -> None:
        self._report_error(exc, f"handler raised on {conn!r} during {event_name(ev)}")
        if ev == MG_EV_HTTP_MSG:
            answer_failed_request(conn)  # 500, or a close: the client must not hang

    def _report_error(self, exc: Exception, context: str) -> None:
        if self._error_handler is not None:
            try:
                self._error_handler(exc)
                return
            except Exception:
                _log.exception("error_handler raised while handling %r", exc)
        _log.error("%s", context, exc_info=exc)

    # -- timers -------------------------------------------------------------------------

    def timer_add(self, milliseconds: int, callback: TimerCallback, *, repeat: bool = False,
                  run_now: bool = False) -> Timer:
        """Run ``callback()`` after ``milliseconds``; every period with ``repeat=True``.

        ``run_now=True`` also runs it at the next poll. Exceptions it raises go where
        handler exceptions go. Returns a :class:`Timer`; keeping it is optional.
        """
        m = self._live()
        if not isinstance(milliseconds, int) or isinstance(milliseconds, bool):
            raise TypeError(f"milliseconds must be int, not {type(milliseconds).__name__}")
        if milliseconds < 0:
            raise ValueError(f"milliseconds must be >= 0, not {milliseconds}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        timer = Timer(self, next(self._timer_ids), callback, bool(repeat))
        self._timers[timer.id] = timer  # before C can fire it
        if not lib.pymg_timer_add(m, timer.id, milliseconds, int(bool(repeat)),
                                  int(bool(run_now))):
            del self._timers[timer.id]
            raise MemoryError("cannot allocate a Mongoose timer")
        return timer

    def _cancel_timer(self, timer_id: int) -> None:
        """Forget a timer. C unlinks it now when called on the thread that polls (or
        before any poll); from another thread, at its next firing, on the polling thread."""
        self._timers.pop(timer_id, None)
        m = self._m
        if m is not None and lib.pymg_poll_thread(m) in (0, threading.get_ident()):
            lib.pymg_timer_cancel(m, timer_id)

    def _fire_timer(self, timer_id: int) -> None:
        timer = self._timers.get(timer_id)
        if timer is None:  # cancelled from another thread: unlink it here
            lib.pymg_timer_cancel(self._m, timer_id)
            return
        if not timer._repeat:
            del self._timers[timer_id]
            timer._active = False
        try:
            timer._callback()
        except Exception as exc:
            self._report_error(exc, f"timer callback raised in {timer!r}")

    # -- state --------------------------------------------------------------------------

    def _alive(self) -> Any:
        """The C manager, for a call any thread may make; raises once closed."""
        m = self._m
        if m is None or self._closing:
            raise ManagerClosedError("this Manager is closed")
        return m

    def _live(self) -> Any:
        """The C manager, for a call from the thread that owns this Manager."""
        m = self._alive()
        self._check_thread(m)
        return m

    def _check_thread(self, m: Any, prefix: str = "") -> None:
        """Raise WrongThreadError when a thread other than this one is polling."""
        if self._polling and lib.pymg_poll_thread(m) != threading.get_ident():
            raise self._wrong_thread(prefix)

    def _wrong_thread(self, prefix: str = "") -> WrongThreadError:
        ident = int(lib.pymg_poll_thread(self._m)) if self._m is not None else 0
        poller = next((t.name for t in threading.enumerate() if t.ident == ident),
                      f"#{ident}")
        return WrongThreadError(
            f"{prefix}thread {threading.current_thread().name!r} used this Manager while thread "
            f"{poller!r} polls it: a Manager and its connections belong to the thread "
            "that polls them; from other threads use wakeup() (Manager(enable_wakeup="
            "True)), close() or Timer.cancel()")

    def _settle(self) -> None:
        """Carry out a close() that a handler asked for while C was busy."""
        if self._close_requested and self._depth == 0 and not self._polling:
            self._free()

    @property
    def closed(self) -> bool:
        """True once close() has run."""
        return self._m is None

    @property
    def handler(self) -> Optional[EventHandler]:
        """The default handler for connections that have none of their own."""
        return self._handler

    @property
    def handler_events(self) -> Optional[frozenset[int]]:
        """The MG_EV_* codes routed to the default handler (declared or inferred from its
        source); None when every event is."""
        return mask_events(self._interest)

    @property
    def infer_events(self) -> bool:
        """Whether handlers given without ``events=`` get only the events their source tests."""
        return self._infer_events

    @property
    def limits(self) -> Limits:
        """The limits HTTP listeners follow unless ``listen(limits=...)`` says otherwise."""
        return self._limits

    @property
    def connections(self) -> tuple[Connection, ...]:
        """A snapshot of the open connections, listeners included, oldest first."""
        m = self._m
        if m is None:
            return ()
        self._check_thread(m)
        found = []
        c = lib.pymg_next_conn(m, NULL)
        while c != NULL:
            conn_id = int(c.id)
            conn = self._conns.get(conn_id)
            # Connections whose handler wanted none of their events yet are wrapped now.
            found.append(conn if conn is not None else self._adopt(conn_id, c))
            c = lib.pymg_next_conn(m, c)
        found.reverse()
        return tuple(found)

    @property
    def wakeup_id(self) -> int:
        """Id of the internal wakeup connection, or 0 without ``enable_wakeup``."""
        return int(lib.pymg_wakeup_id(self._alive()))

    # -- the loop -----------------------------------------------------------------------

    def poll(self, timeout_ms: int = 0) -> None:
        """Run one iteration: wait up to ``timeout_ms`` for I/O, then dispatch events.

        The GIL is released while Mongoose waits, so other threads run meanwhile.
        """
        m = self._m
        if m is None or self._closing:
            raise ManagerClosedError("this Manager is closed")
        if type(timeout_ms) is not int or timeout_ms < 0:
            _check_timeout(timeout_ms)
        if self._polling:
            self._check_thread(m, "poll() is not reentrant: ")
            raise RuntimeError("poll() is not reentrant: it cannot be called from inside an "
                               "event handler")
        self._polling = True
        try:
            queued = _pymg_poll(m, timeout_ms)
            if queued:
                self._drain(queued)
        finally:
            self._polling = False
        if self._close_requested:
            self._settle()

    def run(self, poll_ms: int = 100, *, on_ready: Optional[Callable[[], Any]] = None,
            shutdown_timeout: Optional[float] = None) -> None:
        """Poll until SIGINT or SIGTERM (or close()), then close the Manager.

        Signal handlers are installed only when called from the main thread, and the
        previous ones are restored on return. ``on_ready()`` is called once they are
        installed, before the first poll: print "listening on ..." there, and a signal
        sent as soon as that line is read stops the loop cleanly. With
        ``shutdown_timeout`` (seconds), the signal starts a graceful :meth:`shutdown`
        instead of closing at once. Raises ManagerClosedError on a closed Manager, as
        poll() does.
        """
        self._live()
        if type(poll_ms) is not int or poll_ms < 0:
            _check_timeout(poll_ms)
        if on_ready is not None and not callable(on_ready):
            raise TypeError(f"on_ready must be callable, not {type(on_ready).__name__}")
        stop = threading.Event()

        def on_signal(signum: int, frame: Optional[FrameType]) -> None:
            stop.set()

        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        try:
            if on_ready is not None:
                on_ready()
            while not stop.is_set() and not self.closed:
                self.poll(poll_ms)
            if shutdown_timeout is not None and not self.closed:
                self.shutdown(shutdown_timeout, poll_ms=min(poll_ms, 50))
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            self.close()

    def shutdown(self, timeout: float = 30.0, *, poll_ms: int = 50) -> bool:
        """Stop gracefully: stop accepting, finish in-flight work, then close().

        Listeners close at once; idle connections (no request being received or
        answered, nothing left to send: see ``Connection.is_busy``) are closed as they
        become idle; polling goes on until none is busy or ``timeout`` seconds passed.
        Returns True when everything finished in time. Call it from the thread that
        polls, outside handlers.
        """
        m = self._m
        if m is None:
            return True
        self._check_thread(m)
        if self._polling or self._depth:
            raise RuntimeError("shutdown() cannot be called from inside an event handler")
        deadline = time.monotonic() + max(0.0, float(timeout))
        for conn in self.connections:
            if conn.is_listening:
                conn.close()
        finished = False
        while not self.closed:
            busy = False
            for conn in self.connections:
                if conn.is_listening or conn.is_closing:
                    continue
                if conn.is_busy:
                    busy = True
                else:
                    conn.close()
            if not busy:
                finished = True
                break
            if time.monotonic() >= deadline:
                break
            self.poll(poll_ms)
        if not self.closed:
            self.poll(0)  # let the closes above reach their handlers
        self.close()
        return finished

    # -- opening connections ------------------------------------------------------------

    def _route_for(self, handler: Optional[EventHandler],
                   events: Optional[Iterable[int]]) -> tuple[Optional[EventHandler], int]:
        if handler is None:
            if events is not None:
                return self._handler, interest_mask(self._handler, events)
            return self._handler, self._interest
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        return handler, interest_mask(handler, events, infer=self._infer_events)

    def _open(self, route: tuple[Optional[EventHandler], int], call: Callable[[], Any]) -> Any:
        """Run ``call`` (a C function that opens a connection) with ``route`` pending."""
        self._opening = route
        self._depth += 1
        try:
            c = call()
            queued = lib.pymg_queue_take(self._m)
            if queued:  # MG_EV_OPEN, queued while the route above is pending
                self._drain(queued)
            return c
        finally:
            self._depth -= 1
            self._opening = (None, 0)

    def _wrapper(self, c: Any, route: tuple[Optional[EventHandler], int]) -> Connection:
        """The Connection for a just-opened ``c``, made now unless an event already did."""
        conn = self._conns.get(int(c.id))
        if conn is None:
            conn = Connection(self, c, *route)
            self._conns[conn.id] = conn
            lib.pymg_mark_wrapped(c)  # so that C reports its MG_EV_CLOSE
        self._settle()
        if self._on_work_queued is not None:
            self._on_work_queued()
        return conn

    def listen(self, url: str, handler: Optional[EventHandler] = None, *,
               http: Optional[bool] = None, events: Optional[Iterable[int]] = None,
               tls: Optional[TlsOpts] = None,
               limits: Optional[Limits] = None) -> Connection:
        """Listen on ``url`` (``http://127.0.0.1:8000``, ``tcp://…``, ``udp://…``).

        ``http`` defaults to True for http, https, ws and wss URLs. ``handler`` and
        ``events`` override the Manager's for this listener and every connection it
        accepts. Port 0 picks a free port: read it from ``local_addr``. ``tls`` (a
        TlsOpts with cert and key) makes every accepted connection TLS, as
        ``listener.tls_init(tls)`` does. ``limits`` (a :class:`Limits`) overrides the
        Manager's for this listener; an HTTP listener follows the Manager's otherwise, a
        raw TCP one has none unless given here.

        Raises ListenError (an OSError) naming the URL when the port is busy or the URL
        cannot be listened on.
        """
        m = self._live()
        scheme, raw_url = _check_url(url, "listen")
        proto = lib.PYMG_PROTO_HTTP if _wants_http(scheme, http, url) else lib.PYMG_PROTO_RAW
        tls_opts = _check_tls(tls, client=False)
        if tls_opts is not None and scheme == "udp":
            raise ValueError(f"{url!r}: TLS needs TCP, not UDP")
        if limits is not None:
            _check_limits(limits)
        elif proto == lib.PYMG_PROTO_HTTP:
            limits = self._limits
        route = self._route_for(handler, events)
        err = ffi.new("int *")
        with repeated_by_exception("mg_listen", "mg_open_listener"):  # ListenError says it
            c = self._open(route, lambda: lib.pymg_listen(m, raw_url, proto, route[1], err))
        if c == NULL:
            self._settle()
            code = err[0]
            if code:
                raise ListenError(code, f"cannot listen on {url}: {os.strerror(code)}")
            raise ListenError(
                errno.EINVAL,
                f"cannot listen on {url}: Mongoose refused the address (the host must be an "
                "IP address or localhost, e.g. http://127.0.0.1:8000)",
            )
        listener = self._wrapper(c, route)
        if limits is not None and not scheme.startswith("udp"):
            apply_limits(c, limits, proto == lib.PYMG_PROTO_HTTP)
        if tls_opts is not None:
            listener.tls_init(tls_opts)
        return listener

    def listen_socket(self, sock: socket.socket, handler: Optional[EventHandler] = None, *,
                      http: bool = True, events: Optional[Iterable[int]] = None,
                      limits: Optional[Limits] = None) -> Connection:
        """Serve on an already bound and listening TCP socket (say, one a parent
        process bound before forking workers).

        Mongoose gets its own duplicate of the descriptor, so ``sock`` stays yours to
        close. ``http=False`` serves raw TCP. ``handler``, ``events`` and ``limits``
        work as in :meth:`listen` (an HTTP socket follows the Manager's limits). Several
        processes may serve one socket.
        """
        m = self._live()
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a socket.socket, not {type(sock).__name__}")
        if sock.fileno() < 0:
            raise ValueError("sock is closed")
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET,
                                                                   socket.AF_INET6):
            raise ValueError("listen_socket needs a TCP socket (AF_INET/AF_INET6, SOCK_STREAM)")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError("sock is not listening: call sock.listen() first")
        proto = lib.PYMG_PROTO_HTTP if http else lib.PYMG_PROTO_RAW
        route = self._route_for(handler, events)
        fd = os.dup(sock.fileno())
        c = self._open(route, lambda: lib.pymg_listen_fd(m, fd, proto, route[1]))
        if c == NULL:
            os.close(fd)
            self._settle()
            raise ListenError(errno.ENOMEM, "cannot adopt the listening socket: out of memory")
        if limits is not None:
            _check_limits(limits)
        elif http:
            limits = self._limits
        if limits is not None:
            apply_limits(c, limits, http)
        return self._wrapper(c, route)

    def connect(self, url: str, handler: Optional[EventHandler] = None, *,
                http: Optional[bool] = None, events: Optional[Iterable[int]] = None,
                tls: Optional[TlsOpts] = None) -> Connection:
        """Open an outbound connection to ``url`` and return at once.

        MG_EV_CONNECT follows when it is established, MG_EV_ERROR when it fails.
        ``http`` defaults to True for http, https, ws and wss URLs (responses then
        arrive as MG_EV_HTTP_MSG). ``tls`` (a TlsOpts with ``ca``, or with
        ``skip_verification=True``) sets up TLS as ``conn.tls_init(tls)`` does; an
        https:// or wss:// connection without either fails with MG_EV_ERROR.
        """
        m = self._live()
        scheme, raw_url = _check_url(url, "connect")
        proto = lib.PYMG_PROTO_HTTP if _wants_http(scheme, http, url) else lib.PYMG_PROTO_RAW
        tls_opts = _check_tls(tls, client=True)
        if tls_opts is not None and scheme == "udp":
            raise ValueError(f"{url!r}: TLS needs TCP, not UDP")
        route = self._route_for(handler, events)
        c = self._open(route, lambda: lib.pymg_connect(m, raw_url, proto, route[1], NULL))
        if c == NULL:
            self._settle()
            raise ConnectError(errno.ENOMEM, f"cannot connect to {url}: out of memory")
        return self._client(c, route, raw_url, tls_opts)

    def _client(self, c: Any, route: tuple[Optional[EventHandler], int], raw_url: bytes,
                tls: Optional[TlsOpts]) -> Connection:
        """The wrapper of a new client connection, its TLS set up before it connects."""
        conn = self._wrapper(c, route)
        conn._peer_host = _url_host(raw_url)
        if tls is not None and not conn.is_closed:
            conn.tls_init(tls)
        return conn

    def ws_connect(self, url: str, handler: Optional[EventHandler] = None, *,
                   headers: Optional[dict[str, str]] = None,
                   events: Optional[Iterable[int]] = None,
                   tls: Optional[TlsOpts] = None,
                   compression: Union[bool, PerMessageDeflate] = False) -> Connection:
        """Open a WebSocket client connection; MG_EV_WS_OPEN follows the handshake.

        ``headers`` are added to the upgrade request. ``tls``: as for :meth:`connect`
        (for wss:// URLs). ``compression``: offer permessage-deflate (RFC 7692) with the
        default options (True) or a :class:`PerMessageDeflate`; when the server accepts,
        messages go both ways compressed (an answer that breaks RFC 7692 fails the
        connection with MG_EV_ERROR).
        """
        m = self._live()
        scheme, raw_url = _check_url(url, "ws_connect")
        if scheme not in ("ws", "wss", "http", "https"):
            raise ValueError(f"ws_connect URL {url!r} must start with ws:// or wss://")
        extra = format_headers(headers)
        tls_opts = _check_tls(tls, client=True)
        route = self._route_for(handler, events)
        if compression is not False:
            from . import ws_deflate

            extra, route = ws_deflate.client_setup(extra, route, compression,
                                                    self._limits.max_ws_message_size)
        c = self._open(route, lambda: lib.pymg_connect(m, raw_url, lib.PYMG_PROTO_WS, route[1],
                                                       extra if extra else NULL))
        if c == NULL:
            self._settle()
            raise ConnectError(errno.ENOMEM, f"cannot connect to {url}: out of memory")
        return self._client(c, route, raw_url, tls_opts)

    # -- MQTT ---------------------------------------------------------------------------

    def mqtt_connect(self, url: str, handler: Optional[EventHandler] = None,
                     client_id: str = "", username: str = "", password: str = "",
                     clean_session: bool = True, keepalive: int = 60, *, version: int = 4,
                     will_topic: str = "", will_message: Union[bytes, str] = b"",
                     will_qos: int = 0, will_retain: bool = False,
                     properties: Optional[MqttProperties] = None,
                     will_properties: Optional[MqttProperties] = None,
                     max_packet_size: int = MQTT_MAX_PACKET_SIZE,
                     events: Optional[Iterable[int]] = None,
                     tls: Optional[TlsOpts] = None) -> Connection:
        """Connect to an MQTT broker (``mqtt://host:port``, ``mqtts://`` over TLS), send CONNECT.

        MG_EV_MQTT_OPEN follows with the CONNACK code (0: accepted); a refusal is then
        reported as MG_EV_ERROR naming the reason, and the connection closes. Incoming
        PUBLISH packets arrive as MG_EV_MQTT_MSG, every packet as MG_EV_MQTT_CMD (data:
        MqttMessage). ``version`` is 4 (MQTT 3.1.1) or 5; ``properties`` and
        ``will_properties`` (MQTT 5) are ``(MQTT_PROP_*, value)`` pairs. An empty
        ``client_id`` gets a random one. PINGREQ goes out when nothing was sent for
        ``keepalive`` seconds. A packet larger than ``max_packet_size`` closes it.
        ``tls`` (a TlsOpts with ``ca``, or ``skip_verification=True``): as for
        :meth:`connect`; CONNECT goes out once the handshake is done. An mqtts:// URL
        without it fails with MG_EV_ERROR.
        """
        return _mqtt.connect(
            self, url, handler, client_id, username, password, clean_session, keepalive,
            version=version, will_topic=will_topic, will_message=will_message,
            will_qos=will_qos, will_retain=will_retain, properties=properties,
            will_properties=will_properties, max_packet_size=max_packet_size, events=events,
            tls=tls)

    def mqtt_listen(self, url: str, handler: Optional[EventHandler] = None, *,
                    events: Optional[Iterable[int]] = None,
                    max_packet_size: int = MQTT_MAX_PACKET_SIZE,
                    timeout_ms: int = 10000,
                    tls: Optional[TlsOpts] = None) -> Connection:
        """Listen for MQTT clients (broker side) on ``url`` (``mqtt://127.0.0.1:1883``).

        Every packet arrives as MG_EV_MQTT_CMD, PUBLISH also as MG_EV_MQTT_MSG (data:
        MqttMessage); answer with the ``Connection.mqtt_*`` methods, or pass an
        ``MqttBroker()`` as the handler. Clients that send anything but CONNECT first,
        malformed or unknown packets, or packets over ``max_packet_size`` are closed
        before any handler sees the packet, as are clients that leave a CONNECT or a
        started packet unfinished for ``timeout_ms`` (0: no limit, and it includes the
        TLS handshake). ``tls`` (a TlsOpts with cert and key) makes every accepted
        connection TLS, as for :meth:`listen` (needed with ``mqtts://127.0.0.1:8883``).
        Raises ListenError.
        """
        return _mqtt.listen(self, url, handler, events=events,
                            max_packet_size=max_packet_size, timeout_ms=timeout_ms, tls=tls)

    def sntp_connect(self, url: str, handler: Optional[EventHandler] = None, *,
                     timeout_ms: int = sntp.DEFAULT_TIMEOUT_MS,
                     events: Optional[Iterable[int]] = None) -> Connection:
        """Ask the SNTP server at ``url`` (``udp://host[:123]``) for the time.

        A request goes out at once; ``MG_EV_SNTP_TIME`` follows with the time in
        milliseconds since the epoch (an int), then the connection closes. A malformed
        reply, or none within ``timeout_ms`` of the last request, gives ``MG_EV_ERROR``.
        """
        return sntp.connect(self, url, handler, timeout_ms, events)

    # -- name resolution ----------------------------------------------------------------

    @property
    def dns_server(self) -> str:
        """The DNS server host names are looked up with (``udp://IP:port``); settable
        while no lookup is in progress."""
        return self._dns_server

    @dns_server.setter
    def dns_server(self, url: str) -> None:
        checked = dns.check_server(url)
        self._dns_buffer = dns.configure(lib.pymg_manager_mgr(self._live()), checked, None)
        self._dns_server = checked

    @property
    def dns_timeout_ms(self) -> int:
        """How long a DNS lookup may take, in milliseconds, before MG_EV_ERROR; settable."""
        return int(lib.pymg_dns_timeout(lib.pymg_manager_mgr(self._live())))

    @dns_timeout_ms.setter
    def dns_timeout_ms(self, timeout_ms: int) -> None:
        dns.configure(lib.pymg_manager_mgr(self._live()), None, dns.check_timeout(timeout_ms))

    # -- threads ------------------------------------------------------------------------

    def wakeup(self, connection_id: int, data: Union[bytes, str] = b"") -> bool:
        """From any thread: deliver MG_EV_WAKEUP with ``data`` to a connection of this Manager.

        Needs ``Manager(enable_wakeup=True)``. Messages are queued in C and delivered in
        the order each thread sent them, none lost however fast they come; False means
        there was no memory to queue it, or (with a RuntimeWarning, as cymongoose returns
        False there) that wakeup is not enabled. ``data`` is at most 1 MiB.
        """
        m = self._alive()
        if not self._wakeup_enabled:
            warnings.warn("wakeup() needs Manager(enable_wakeup=True); nothing was sent",
                          RuntimeWarning, stacklevel=2)
            return False
        if not isinstance(connection_id, int) or connection_id <= 0:
            raise ValueError(f"connection_id must be a positive int, not {connection_id!r}")
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes or str, not {type(data).__name__}")
        if len(data) > lib.PYMG_WAKEUP_MAX:
            raise ValueError(f"wakeup data is limited to {lib.PYMG_WAKEUP_MAX} bytes")
        return bool(lib.pymg_wakeup(m, connection_id, data, len(data)))

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection (each gets MG_EV_CLOSE) and free the Manager.

        Safe to call twice. Called from inside a handler, it takes effect as soon as the
        current poll() returns.
        """
        if self._m is None:
            return
        if self._depth or self._polling:
            self._close_requested = True
            return
        self._free()

    def _free(self) -> None:
        m = self._m
        self._closing = True
        self._depth += 1
        try:
            lib.pymg_manager_free(m)
        finally:
            self._depth -= 1
            self._m = None
            self._queue = None
            for conn in self._conns.values():
                conn._detach()
            self._conns.clear()
            for timer in self._timers.values():
                timer._active = False  # Mongoose freed them with the manager
            self._timers.clear()
            _dispatch.MANAGERS.pop(self._slot, None)
            self._finalizer.detach()

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._m is None else f"{len(self._conns)} connections"
        return f"<Manager {state}>"
