"""AsyncManager: a Manager driven by a running asyncio event loop.

The loop watches Mongoose's epoll descriptor like any socket and polls the Manager with
a zero timeout when it is readable, so nothing blocks the loop and nothing busy-polls.
A periodic tick (``tick_ms``) polls as well, so that MG_EV_POLL-based timeouts keep
running when there is no I/O.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, Optional, Union

from . import connection as _connection
from ._ffi import lib
from .connection import Connection, EventHandler
from .limits import Limits
from .manager import ErrorHandler, Manager
from .timers import Timer, TimerCallback
from .tls import TlsOpts

__all__ = ["FALLBACK_POLL_MS", "AsyncManager"]

#: Polling period used when Mongoose has no epoll descriptor to wait on (not Linux).
FALLBACK_POLL_MS = 5
# Mongoose's own loop waits 1 ms, not 0, when a connection is closing or has TLS data
# buffered; doing the same keeps a connection stuck in that state from spinning the loop.
_SOON_S = 0.001


def _poll_fd(manager: Manager) -> int:
    """Mongoose's epoll descriptor for ``manager``, or -1 when it has none."""
    return int(lib.pymg_poll_fd(manager._m))


class AsyncManager:
    """A :class:`~pymongoose.Manager` polled from the running asyncio event loop.

    Handlers stay synchronous and run on the loop's thread, so they may schedule
    coroutines (``asyncio.get_running_loop().create_task(...)``; keep a reference to
    the task), and those coroutines may call ``conn.send``, ``reply`` or ``ws_send``
    later: a Connection stays valid until its MG_EV_CLOSE. What they send goes out at
    once, not at the next tick.

    The loop waits on Mongoose's epoll descriptor and polls when it is readable; it also
    polls every ``tick_ms`` milliseconds, for MG_EV_POLL and Mongoose's timers. Where
    Mongoose has no descriptor to offer (a build without epoll), it polls every
    ``FALLBACK_POLL_MS`` (5) milliseconds instead: still without blocking, but never idle.

    Use it as ``async with AsyncManager(handler) as amgr:`` or call :meth:`start` from
    the loop and ``await`` :meth:`close` at the end. Other threads reach the loop with
    :meth:`schedule` (or ``loop.call_soon_threadsafe``) and the Manager with
    :meth:`wakeup` (wakeup is always enabled here).

    cymongoose's signature works too: ``AsyncManager(handler, poll_interval)`` sets
    ``tick_ms``; ``shutdown_timeout`` is accepted and has no effect (there is no poll
    thread to wait for).
    """

    def __init__(self, handler: Optional[EventHandler] = None,
                 poll_interval: Optional[float] = None, *,
                 error_handler: Optional[ErrorHandler] = None,
                 events: Optional[Iterable[int]] = None, tick_ms: float = 100,
                 limits: Optional[Limits] = None,
                 shutdown_timeout: Optional[float] = None,
                 infer_events: bool = True) -> None:
        # cymongoose's poll_interval is the period of its poll thread: our tick.
        # shutdown_timeout bounds its wait for that thread; with no thread here, close()
        # never waits for one, so it is accepted for compatibility and has no effect.
        if poll_interval is not None:
            tick_ms = poll_interval
        del shutdown_timeout
        if isinstance(tick_ms, bool) or not isinstance(tick_ms, (int, float)):
            raise TypeError(f"tick_ms must be a number, not {type(tick_ms).__name__}")
        if not tick_ms > 0:
            raise ValueError(f"tick_ms must be > 0, not {tick_ms}")
        self._manager = Manager(handler, enable_wakeup=True, error_handler=error_handler,
                                events=events, limits=limits, infer_events=infer_events)
        self._tick_s = tick_ms / 1000
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._fd = -1  # our duplicate of Mongoose's descriptor, watched by the loop
        self._tick: Optional[asyncio.Handle] = None
        self._soon: Optional[asyncio.Handle] = None  # one extra poll, at most, pending
        self._soon_is_immediate = False
        self._tasks: set[asyncio.Future[Any]] = set()  # schedule()'d, kept until done

    # -- what it wraps ------------------------------------------------------------------

    @property
    def manager(self) -> Manager:
        """The wrapped Manager (close it through :meth:`close`, not directly)."""
        return self._manager

    @property
    def closed(self) -> bool:
        """True once the Manager is closed."""
        return self._manager.closed

    @property
    def started(self) -> bool:
        """True while an event loop polls the Manager."""
        return self._loop is not None and self._tick is not None

    @property
    def running(self) -> bool:
        """True between start() and close(): cymongoose's name for :attr:`started`."""
        return self.started and not self.closed

    def _started_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._tick is None:
            raise RuntimeError("AsyncManager is not started: use `async with` or start()")
        return self._loop

    def listen(self, url: str, handler: Optional[EventHandler] = None, *,
               http: Optional[bool] = None,
               events: Optional[Iterable[int]] = None,
               tls: Optional[TlsOpts] = None) -> Connection:
        """Listen on ``url``: :meth:`Manager.listen <pymongoose.Manager.listen>`."""
        return self._manager.listen(url, handler, http=http, events=events, tls=tls)

    def connect(self, url: str, handler: Optional[EventHandler] = None, *,
                http: Optional[bool] = None,
                events: Optional[Iterable[int]] = None,
                tls: Optional[TlsOpts] = None) -> Connection:
        """Open an outbound connection: :meth:`Manager.connect <pymongoose.Manager.connect>`."""
        return self._manager.connect(url, handler, http=http, events=events, tls=tls)

    def ws_connect(self, url: str, handler: Optional[EventHandler] = None, *,
                   headers: Optional[dict[str, str]] = None,
                   events: Optional[Iterable[int]] = None,
                   tls: Optional[TlsOpts] = None) -> Connection:
        """Open a WebSocket client: :meth:`Manager.ws_connect <pymongoose.Manager.ws_connect>`."""
        return self._manager.ws_connect(url, handler, headers=headers, events=events, tls=tls)

    def mqtt_connect(self, url: str, handler: Optional[EventHandler] = None,
                     *args: Any, **options: Any) -> Connection:
        """An MQTT client: :meth:`Manager.mqtt_connect <pymongoose.Manager.mqtt_connect>`."""
        return self._manager.mqtt_connect(url, handler, *args, **options)

    def mqtt_listen(self, url: str, handler: Optional[EventHandler] = None,
                    **options: Any) -> Connection:
        """Listen for MQTT clients: :meth:`Manager.mqtt_listen <pymongoose.Manager.mqtt_listen>`."""
        return self._manager.mqtt_listen(url, handler, **options)

    def sntp_connect(self, url: str, handler: Optional[EventHandler] = None,
                     **options: Any) -> Connection:
        """Ask an SNTP server the time: :meth:`Manager.sntp_connect
        <pymongoose.Manager.sntp_connect>` (after start())."""
        self._started_loop()
        return self._manager.sntp_connect(url, handler, **options)

    def timer_add(self, milliseconds: int, callback: TimerCallback, *, repeat: bool = False,
                  run_now: bool = False) -> Timer:
        """A timer on the Manager: :meth:`Manager.timer_add
        <pymongoose.Manager.timer_add>` (after start())."""
        self._started_loop()
        timer = self._manager.timer_add(milliseconds, callback, repeat=repeat,
                                        run_now=run_now)
        self._poll_soon()
        return timer

    def wakeup(self, connection_id: int, data: Union[bytes, str] = b"") -> bool:
        """From any thread: MG_EV_WAKEUP with ``data`` for a connection (after start()).

        See :meth:`Manager.wakeup <pymongoose.Manager.wakeup>`; the loop polls when the
        message arrives, as for any I/O.
        """
        self._started_loop()
        return self._manager.wakeup(connection_id, data)

    def schedule(self, coro_or_callback: Any) -> None:
        """From any thread: run a callback, or a coroutine as a task, on the event loop.

        Handlers already run on the loop's thread; this is for code that wants its work
        to run after the handler returns (and for cymongoose code written for a poll
        thread). A task started here is kept until it ends.
        """
        loop = self._started_loop()
        if asyncio.iscoroutine(coro_or_callback):
            coro = coro_or_callback
            loop.call_soon_threadsafe(self._spawn, coro)
        elif callable(coro_or_callback):
            loop.call_soon_threadsafe(coro_or_callback)
        else:
            raise TypeError("schedule() takes a coroutine or a callable, not "
                            f"{type(coro_or_callback).__name__}")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- driving the Manager ------------------------------------------------------------

    def start(self) -> None:
        """Start polling from the running event loop (``async with`` does this for you).

        Call it from a coroutine or callback of the loop that will own the Manager.
        """
        self._manager._live()  # ManagerClosedError once closed
        if self._loop is not None:
            raise RuntimeError("this AsyncManager was already started")
        loop = asyncio.get_running_loop()
        fd = _poll_fd(self._manager)
        period = self._tick_s
        if fd >= 0:
            # Watch a duplicate: it stays valid however the Manager gets closed, so the
            # loop is never left watching a number the system may hand out again.
            self._fd = os.dup(fd)
            loop.add_reader(self._fd, self._poll)
        else:
            period = min(period, FALLBACK_POLL_MS / 1000)
        self._loop = loop
        self._manager._on_work_queued = self._poll_soon
        _connection._wake_hooks += 1  # ws_send looks for the hook from now on
        self._tick = loop.call_later(period, self._on_tick, period)
        self._poll_soon()  # whatever listen() or connect() queued before start()

    async def close(self) -> None:
        """Stop polling and close the Manager; every connection gets MG_EV_CLOSE.

        Safe to call twice, and before start().
        """
        self._stop()
        self._manager.close()

    async def __aenter__(self) -> AsyncManager:
        self.start()
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        await self.close()

    def _poll(self) -> None:
        """One non-blocking poll, then make sure the descriptor reports what is pending."""
        manager = self._manager
        if not manager.closed:
            manager.poll(0)
        if manager.closed:  # a handler (or someone holding the Manager) closed it
            self._stop()
            return
        # Data queued during the poll (replies, file chunks) does not make the descriptor
        # readable until Mongoose is asked to watch for writability: do that now.
        if lib.pymg_prepare_wait(manager._m) and self._soon is None:
            assert self._loop is not None
            self._soon = self._loop.call_later(_SOON_S, self._on_soon)
            self._soon_is_immediate = False

    def _poll_soon(self) -> None:
        """Manager hook: work was queued (a send, a close, a connection); poll once, now."""
        if self._manager._polling or self._loop is None:
            return  # _poll() calls pymg_prepare_wait when this poll ends
        if self._soon is not None:
            if self._soon_is_immediate:
                return
            self._soon.cancel()
        self._soon = self._loop.call_soon(self._on_soon)
        self._soon_is_immediate = True

    def _on_soon(self) -> None:
        self._soon = None
        self._poll()

    def _on_tick(self, period: float) -> None:
        assert self._loop is not None
        self._tick = self._loop.call_later(period, self._on_tick, period)
        self._poll()

    def _stop(self) -> None:
        """Detach from the loop: no reader, no pending calls, no hook."""
        if self._manager._on_work_queued is not None:
            self._manager._on_work_queued = None
            _connection._wake_hooks -= 1
        for handle in (self._tick, self._soon):
            if handle is not None:
                handle.cancel()
        self._tick = self._soon = None
        if self._fd >= 0:
            assert self._loop is not None
            if not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __repr__(self) -> str:
        state = "closed" if self.closed else "polling" if self.started else "not started"
        return f"<AsyncManager {state}: {self._manager!r}>"
