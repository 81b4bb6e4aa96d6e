"""The ``Date`` response header (RFC 9110 asks origin servers with a clock to send
one), formatted at most once a second for every server module that needs it."""

from __future__ import annotations

from email.utils import formatdate
from time import time

__all__ = ["http_date"]

_value = ""
_second = -1


def http_date() -> str:
    """Now as an IMF-fixdate, e.g. ``Tue, 24 Nov 2026 23:35:25 GMT``."""
    global _value, _second
    now = int(time())
    if now != _second:
        _value = formatdate(now, usegmt=True)
        _second = now
    return _value
