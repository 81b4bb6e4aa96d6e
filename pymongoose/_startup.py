"""The line every server mode prints once it listens, so that static files
(``python -m pymongoose``), WSGI and ASGI apps announce themselves alike."""

from __future__ import annotations

__all__ = ["startup_line"]


def startup_line(what: str, url: str, workers: int, detail: str = "") -> str:
    """``Serving WHAT at URL/ (N workers[, DETAIL])``: what a server prints when ready."""
    extra = f"{workers} worker{'' if workers == 1 else 's'}"
    if detail:
        extra += f", {detail}"
    return f"Serving {what} at {url.rstrip('/')}/ ({extra})"
