"""Hello-world Starlette on one ASGI server, for bench/asgi_bench.py.

    python asgi_server.py pymongoose|uvicorn|granian [WORKERS]

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
from typing import Callable

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_cli(argv_for_port: Callable[[int], list[str]]) -> None:
    """Servers that cannot report a port-0 listener: take a free port, start, wait."""
    for _attempt in range(5):
        port = free_port()
        here = os.path.dirname(os.path.abspath(__file__))
        proc = subprocess.Popen(argv_for_port(port), cwd=here, stdout=subprocess.DEVNULL)
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
    raise SystemExit("the server did not start")


def granian_argv(workers: int) -> Callable[[int], list[str]]:
    return lambda port: [
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--loop", "uvloop", "--no-ws",
        "--log-level", "warning", "asgi_server:app"]


def uvicorn_argv(workers: int) -> Callable[[int], list[str]]:
    return lambda port: [
        sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
        "--lifespan", "off", "--no-access-log", "--log-level", "warning", "asgi_server:app"]


def run_pymongoose_workers(workers: int) -> None:
    from pymongoose import workers as prefork
    from pymongoose.asgi import ASGIServer

    def worker_main(ctx: prefork.WorkerContext) -> None:
        async def main() -> None:
            server = ASGIServer(app)
            await server.start(sock=ctx.sock)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()
            await server.close()

        loop = new_loop()
        loop.run_until_complete(main())

    prefork.run("http://127.0.0.1:0", worker_main, workers,
                on_ready=lambda url: print(f"PORT {url.rsplit(':', 1)[1]}", flush=True))


def main() -> None:
    kind = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if kind == "granian":
        run_cli(granian_argv(workers))
        return
    if workers > 1:
        if kind == "uvicorn":
            run_cli(uvicorn_argv(workers))
        else:
            run_pymongoose_workers(workers)
        return
    loop = new_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(run_pymongoose() if kind == "pymongoose" else run_uvicorn())


if __name__ == "__main__":
    main()
