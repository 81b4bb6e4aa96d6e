"""Hello-world Starlette on one ASGI server, for bench/asgi_bench.py.

    python asgi_server.py pymongoose|uvicorn|granian

Prints ``PORT <n>`` once it accepts connections; SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def hello(request: Request) -> Response:
    return PlainTextResponse("Hello, World!")


app = Starlette(routes=[Route("/", hello)])


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # PyPy
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def run_pymongoose() -> None:
    from pymongoose.asgi import ASGIServer

    server = ASGIServer(app)
    await server.start("http://127.0.0.1:0")
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: asyncio.ensure_future(server.close()))
    print(f"PORT {server.port}", flush=True)
    await server.serve_forever()


async def run_uvicorn() -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, loop="none", http="httptools", lifespan="off",
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)  # it handles SIGTERM itself
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await task


def run_granian() -> None:
    """Granian cannot report a port-0 listener: take a free port, start it, wait for it."""
    for _attempt in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        here = os.path.dirname(os.path.abspath(__file__))
        proc = subprocess.Popen(
            [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--loop", "uvloop", "--no-ws",
             "--log-level", "warning", "asgi_server:app"],
            cwd=here, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            signal.signal(signal.SIGTERM, lambda *_, p=proc: p.terminate())
            print(f"PORT {port}", flush=True)
            proc.wait()
            return
        proc.kill()
        proc.wait()
    raise SystemExit("granian did not start")


def main() -> None:
    kind = sys.argv[1]
    if kind == "granian":
        run_granian()
        return
    loop = new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(run_pymongoose() if kind == "pymongoose" else run_uvicorn())


if __name__ == "__main__":
    main()
