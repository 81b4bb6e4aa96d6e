"""The one entry point from C into Python: every routed event arrives here.

The C glue (csrc/glue.c) has already dropped the events nobody asked for, and
queued the data-less ones (MG_EV_POLL, MG_EV_READ, ...) and small WebSocket messages
to be delivered in a batch (Manager._drain). What reaches this function is delivered
here: MG_EV_HTTP_MSG and MG_EV_HTTP_HDRS, the hottest events, inline; the rest by
Manager._dispatch.
"""

from __future__ import annotations

import logging
import sys
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from ._ffi import ffi, lib
from ._mglog import demoted_level
from .constants import MG_EV_HTTP_HDRS, MG_EV_HTTP_MSG
from .messages import HttpMessage

if TYPE_CHECKING:
    from .manager import Manager

#: Live managers by the slot number their C side carries, held weakly: a Manager
#: dropped without close() is collected, and its finalizer frees the C side.
MANAGERS: dict[int, weakref.ref[Manager]] = {}

_log = logging.getLogger("pymongoose")

# References to a view once its handler returned: the local variable and getrefcount's
# own argument. More means the handler kept it, so it must not be reused. PyPy has no
# reference counts: there a fresh view is made for every event.
_getrefcount: Optional[Callable[[object], int]] = getattr(sys, "getrefcount", None)
_UNSHARED_REFS = 2


def _always_shared(_view: object) -> int:
    """PyPy's stand-in for sys.getrefcount: every view counts as kept by its handler."""
    return _UNSHARED_REFS + 1


#: sys.getrefcount, or on PyPy a function saying every view was kept: one call, no test,
#: on the per-message path.
refcount: Callable[[object], int] = _getrefcount or _always_shared

_F = TypeVar("_F", bound=Callable[..., Any])
_def_extern: Callable[..., Callable[[_F], _F]] = ffi.def_extern


def _on_escape(exc_type: type[BaseException], exc: BaseException,
               tb: Optional[TracebackType]) -> None:
    # Handler errors are caught by Manager; anything reaching here is our own bug.
    _log.error("pymongoose: internal error in event dispatch", exc_info=(exc_type, exc, tb))


# Mongoose's log lines start "<hex millis> <level> <file>:<line>:<function>".
_MONGOOSE_LOG = logging.getLogger("pymongoose.mongoose")
_LOG_LEVELS = {1: logging.ERROR, 2: logging.INFO, 3: logging.DEBUG, 4: logging.DEBUG}
PYMG_EV_LOG: int = lib.PYMG_EV_LOG


def _forward_log_line(raw: bytes) -> None:
    """One Mongoose log line into the ``pymongoose.mongoose`` logger, at its level."""
    line = raw.decode("utf-8", "replace")
    parts = line.split(None, 2)
    level = logging.ERROR
    if len(parts) >= 2 and parts[1].isdigit():
        level = _LOG_LEVELS.get(int(parts[1]), logging.DEBUG)
    _MONGOOSE_LOG.log(demoted_level(line, level), "%s", line)


@_def_extern(onerror=_on_escape)
def pymg_on_event(mgr_slot: int, conn_id: int, ev: int, ev_data: Any, pending: int) -> None:
    try:
        manager = MANAGERS[mgr_slot]()
    except KeyError:  # a Mongoose log line (slot 0), or a Manager being torn down
        if mgr_slot == 0 and ev == PYMG_EV_LOG:
            _forward_log_line(ffi.string(ffi.cast("char *", ev_data)))
        return
    if manager is None:  # collected unclosed: its finalizer is freeing the C side
        return
    if pending:  # queued events come first, in order
        manager._drain(pending)
    if ev < 0:  # PYMG_EV_TIMER, the only negative code: conn_id is the timer's id
        manager._fire_timer(conn_id)
        return
    conn = manager._conns.get(conn_id)
    if conn is None:
        conn = manager._adopt(conn_id)
    handler = conn._handler
    if (ev != MG_EV_HTTP_MSG and ev != MG_EV_HTTP_HDRS) or handler is None:
        manager._dispatch(conn, ev, ev_data)
        return
    # The hottest events, spelled out: lend the handler the Manager's HttpMessage view,
    # then take it back. It leaves its slot while lent, so a nested event gets its own.
    view = manager._http_view
    if view is None:
        view = HttpMessage()
    else:
        manager._http_view = None
    view._raw = ev_data
    try:
        handler(conn, ev, view)
    except Exception as exc:
        manager._report(exc, conn, ev)
    finally:
        view._raw = view._typed = None
        if _getrefcount is not None and _getrefcount(view) <= _UNSHARED_REFS:
            manager._http_view = view  # nobody kept it: reuse it next time
