"""serve(app, workers=N): N forked processes (pymongoose.workers) serving one socket."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import requests
from asgi_helpers import TIMEOUT
from subprocess_helpers import kill_group

APP = textwrap.dedent("""
    import os

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            if os.environ.get("FAIL_STARTUP"):
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
""")


def start(tmp_path: Path, workers: int, env: dict[str, str]) -> subprocess.Popen[str]:
    (tmp_path / "pid_app.py").write_text(APP)
    code = ("import pid_app; from pymongoose.asgi import serve; "
            f"serve(pid_app.app, 'http://127.0.0.1:0', workers={workers})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)


def test_two_workers_serve_from_two_processes_and_stop_on_sigterm(tmp_path: Path) -> None:
    import os

    proc = start(tmp_path, 2, dict(os.environ))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "(2 workers)" in line
        found = re.search(r"^Serving ASGI app at (http://[\d.:]+)/ \(2 workers\)$",
                          line)
        assert found is not None
        pids = set()
        for _ in range(200):  # new connections each time: the kernel spreads them
            pids.add(requests.get(found.group(1), timeout=TIMEOUT,
                                  headers={"Connection": "close"}).text)
            if len(pids) == 2:
                break
        assert len(pids) == 2
        assert str(proc.pid) not in pids
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        kill_group(proc)  # the workers too, if the server did not stop them
    assert proc.returncode == 0


def test_lifespan_failure_in_workers_exits_non_zero_with_the_message(tmp_path: Path) -> None:
    import os

    proc = start(tmp_path, 2, {**os.environ, "FAIL_STARTUP": "1"})
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)  # the workers too, if the server did not stop them
    assert proc.returncode != 0
    assert "ASGI lifespan startup failed: no database" in err


def test_a_worker_told_to_stop_before_its_loop_listens_for_signals_stops() -> None:
    """A SIGTERM that reaches a worker before its event loop installed its own signal
    handlers only sets the worker's ``stopping`` flag; the server must see the flag
    instead of serving until the supervisor kills it (seen once in 30 runs of the CLI's
    two-worker test: "still running 30 s after signal 15")."""
    import threading

    from pymongoose.asgi.server import _run_loop, _serve_main

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        raise RuntimeError("never called: no request is made")

    stopping = threading.Event()
    stopping.set()  # what the worker's handler did with the early signal
    finished = threading.Event()

    def worker() -> None:  # not the main thread: the loop cannot add signal handlers
        _run_loop(_serve_main(app, "http://127.0.0.1:0", None, False, announce=False,
                              stopping=stopping))
        finished.set()

    threading.Thread(target=worker, daemon=True).start()
    assert finished.wait(TIMEOUT)
