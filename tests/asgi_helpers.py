"""Run a pymongoose ASGIServer in a thread with its own event loop, for blocking clients."""

from __future__ import annotations

import asyncio
import contextlib
import platform
import socket
import threading
from collections.abc import Iterator
from typing import Any

from pymongoose.asgi import ASGIServer

TIMEOUT = 10.0
#: Event loops every test of the server's basics runs on.
LOOP_KINDS = ["asyncio"] + (["uvloop"] if platform.python_implementation() == "CPython" else [])


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh event loop of ``kind`` ("asyncio" or "uvloop")."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Running:
    """A server running in its thread: its URL and a way to run code on its loop."""

    def __init__(self, server: ASGIServer, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self.server = server
        self.loop = loop
        self.url = url
        self.ws_url = url.replace("http://", "ws://")
        self.port = int(url.rsplit(":", 1)[1])

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)


@contextlib.contextmanager
def running_asgi(app: Any, loop_kind: str = "asyncio", **kwargs: Any) -> Iterator[Running]:
    """Serve ``app`` on 127.0.0.1, port 0, until the block ends."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    loop = new_loop(loop_kind)

    async def main() -> None:
        server = ASGIServer(app, **kwargs)
        box["server"] = server
        stop = box["stop"] = asyncio.Event()
        try:
            await server.start("http://127.0.0.1:0")
            box["url"] = server.url
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            return
        ready.set()
        await stop.wait()  # the test may close the server itself meanwhile
        await server.close()

    def thread_main() -> None:
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, name="asgi-test-loop", daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT), "the server did not start"
    if "error" in box:
        thread.join(TIMEOUT)
        raise box["error"]
    running = Running(box["server"], loop, box["url"])
    try:
        yield running
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def raw_request(port: int, data: bytes, *, read_all: bool = True) -> bytes:
    """Send ``data`` on a fresh TCP connection; read until the server closes (or 1 reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if not read_all and b"\r\n\r\n" in b"".join(chunks):
                break
        return b"".join(chunks)
