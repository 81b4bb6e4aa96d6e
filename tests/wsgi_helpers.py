"""Run a WSGIServer on 127.0.0.1, port 0, in a background thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pymongoose.wsgi import WSGIServer


@contextlib.contextmanager
def wsgi_serving(app: Any, **kwargs: Any) -> Iterator[str]:
    """Yield the base URL of ``app`` served by a WSGIServer until the block ends."""
    server = WSGIServer(app, **kwargs)
    listener = server.listen("http://127.0.0.1:0")
    addr = listener.local_addr
    assert addr is not None
    stop = threading.Event()
    thread = threading.Thread(target=server.run, kwargs={"stop": stop, "poll_ms": 20},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{addr[1]}"
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
