"""Limits: what a listener allows each connection it accepts."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ._ffi import ffi, lib

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Size, time and connection limits for the connections a listener accepts.

    Enforced in C as the bytes arrive, before Mongoose buffers more. 0 switches a
    limit off. Sizes are bytes, timeouts seconds. Going over a limit answers and
    closes: 431 (head), 413 (body), WebSocket close 1009 (message), 408 (a request
    not complete in time), 503 (too many connections); an idle connection is closed
    silently.
    """

    #: Request line plus headers.
    max_header_size: int = 32 * 1024
    #: A request body: its Content-Length, or the sum of its chunks.
    max_body_size: int = 16 * 1024 * 1024
    #: One WebSocket message, all its fragments together; a compressed message
    #: (permessage-deflate) also once inflated.
    max_ws_message_size: int = 16 * 1024 * 1024
    #: No byte received or sent and no request pending (HTTP; not WebSocket).
    idle_timeout: float = 60.0
    #: From a request's first byte until its head and body are complete.
    request_timeout: float = 30.0
    #: Accepted connections open at once; 0: as many as file descriptors allow.
    max_connections: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("timeout"):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"Limits.{f.name} must be a number of seconds, "
                                    f"not {type(value).__name__}")
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"Limits.{f.name} must be >= 0 seconds (0: no timeout), "
                                     f"not {value!r}")
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"Limits.{f.name} must be an int, "
                                    f"not {type(value).__name__}")
                if not 0 <= value < 1 << 62:
                    raise ValueError(f"Limits.{f.name} must be >= 0 (0: no limit), "
                                     f"not {value!r}")

    @classmethod
    def unlimited(cls) -> Limits:
        """Limits with every limit switched off (Mongoose's own behaviour)."""
        return cls(0, 0, 0, 0.0, 0.0, 0)


def _ms(seconds: float) -> int:
    """Seconds as whole milliseconds, at least 1 for any positive value."""
    return 0 if seconds == 0 else max(1, round(seconds * 1000))


def apply_limits(listener: Any, limits: Limits, http: bool) -> None:
    """Attach ``limits`` to a listener's C state (``http``: the HTTP rules apply too)."""
    c_limits = ffi.new("struct pymg_limits *")
    c_limits.max_header_size = limits.max_header_size
    c_limits.max_body_size = limits.max_body_size
    c_limits.max_ws_message_size = limits.max_ws_message_size
    c_limits.idle_timeout_ms = _ms(limits.idle_timeout)
    c_limits.request_timeout_ms = _ms(limits.request_timeout)
    c_limits.max_connections = limits.max_connections
    c_limits.check_http = 1 if http else 0
    if not lib.pymg_set_limits(listener, c_limits):
        raise MemoryError("cannot attach limits to the listener: out of memory")
