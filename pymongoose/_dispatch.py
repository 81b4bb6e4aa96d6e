"""The one entry point from C into Python: every routed event arrives here.

The C glue (csrc/glue.c) has already dropped the events nobody asked for, and
queued the data-less ones (MG_EV_POLL, MG_EV_READ, ...) to be delivered in a batch;
what reaches this function goes straight to the Manager that owns the connection.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from ._ffi import ffi

if TYPE_CHECKING:
    from .manager import Manager

#: Live managers by the slot number their C side carries.
MANAGERS: dict[int, Manager] = {}

_log = logging.getLogger("pymongoose")

_F = TypeVar("_F", bound=Callable[..., Any])
_def_extern: Callable[..., Callable[[_F], _F]] = ffi.def_extern


def _on_escape(exc_type: type[BaseException], exc: BaseException,
               tb: Optional[TracebackType]) -> None:
    # Handler errors are caught by Manager; anything reaching here is our own bug.
    _log.error("pymongoose: internal error in event dispatch", exc_info=(exc_type, exc, tb))


@_def_extern(onerror=_on_escape)
def pymg_on_event(mgr_slot: int, conn_id: int, ev: int, ev_data: Any, pending: int) -> None:
    manager = MANAGERS.get(mgr_slot)
    if manager is not None:
        if pending:  # queued data-less events come first, in order
            manager._drain(pending)
        manager._dispatch(conn_id, ev, ev_data)
