"""Mongoose's own log lines that only repeat an error we raise as a Python exception.

``Manager.listen`` on a busy port makes Mongoose log ``bind: 98`` and ``Failed: URL``
at its ERROR level, then we raise ListenError saying the same. While a call that raises
runs inside :func:`repeated_by_exception`, the lines the named C functions log are
passed on at DEBUG instead of ERROR: still there for whoever debugs Mongoose, not
printed twice by default. Everything else (other functions, other threads, other
calls) keeps its level.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

__all__ = ["demoted_level", "repeated_by_exception"]

_state = threading.local()


@contextlib.contextmanager
def repeated_by_exception(*functions: str) -> Iterator[None]:
    """Demote to DEBUG the lines Mongoose's ``functions`` log on this thread while the
    block runs: the block raises an exception that reports the same failure."""
    before: tuple[str, ...] = getattr(_state, "functions", ())
    _state.functions = before + functions
    try:
        yield
    finally:
        _state.functions = before


def _function_of(line: str) -> str:
    # "<hex millis> <level> <file>:<line>:<function, cut to 13 characters> <message>"
    parts = line.split(None, 3)
    return parts[2].rpartition(":")[2] if len(parts) >= 3 else ""


def demoted_level(line: str, level: int) -> int:
    """``level``, or DEBUG for an ERROR line that an exception being raised repeats."""
    functions: tuple[str, ...] = getattr(_state, "functions", ())
    if not functions or level < logging.ERROR:
        return level
    logged_by = _function_of(line)
    if logged_by and any(name.startswith(logged_by) for name in functions):
        return logging.DEBUG
    return level
