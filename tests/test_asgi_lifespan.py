"""ASGI lifespan: startup and shutdown order, state, failures, apps without lifespan."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests
from asgi_helpers import TIMEOUT, running_asgi
from subprocess_helpers import kill_group

from pymongoose.asgi import LifespanFailure


class LifespanApp:
    """Records the lifespan messages; answers HTTP with what the state holds."""

    def __init__(self, fail_startup: bool = False) -> None:
        self.log: list[str] = []
        self.fail_startup = fail_startup

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.log.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        await send({"type": "lifespan.startup.failed",
                                    "message": "database unreachable"})
                        return
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = scope["state"]["db"].encode()
        scope["state"]["db"] = "changed by a request"  # a copy: others don't see it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def test_startup_state_and_shutdown_in_order() -> None:
    app = LifespanApp()
    with running_asgi(app) as srv:
        assert app.log == ["lifespan.startup"]
        assert requests.get(srv.url, timeout=TIMEOUT).text == "connected"
        assert requests.get(srv.url, timeout=TIMEOUT).text == "connected"
    assert app.log == ["lifespan.startup", "lifespan.shutdown"]


def test_startup_failure_is_raised_with_the_message() -> None:
    app = LifespanApp(fail_startup=True)
    with pytest.raises(LifespanFailure, match="database unreachable"), running_asgi(app):
        pass


def test_app_without_lifespan_support_is_served() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "lifespan not supported"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    with running_asgi(app) as srv:
        assert requests.get(srv.url, timeout=TIMEOUT).status_code == 204


def test_serve_exits_non_zero_with_the_message(tmp_path: Path) -> None:
    module = tmp_path / "failing_app.py"
    module.write_text(textwrap.dedent("""
        async def app(scope, receive, send):
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no config file"})
    """))
    code = ("import failing_app; from pymongoose.asgi import serve; "
            "serve(failing_app.app, 'http://127.0.0.1:0')")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "no config file" in done.stderr


def test_closing_the_server_closes_websockets_with_1001_and_stops_requests() -> None:
    import websocket

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    with running_asgi(app) as srv:
        ws = websocket.create_connection(srv.ws_url, timeout=TIMEOUT)
        srv.call(srv.server.close())
        opcode, frame = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 1001
        with pytest.raises(requests.ConnectionError):
            requests.get(srv.url, timeout=TIMEOUT)


def test_serve_runs_until_sigterm_then_shuts_down(tmp_path: Path) -> None:
    import re
    import signal

    module = tmp_path / "small_app.py"
    module.write_text(textwrap.dedent("""
        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    kind = message["type"].split(".")[1]
                    print("lifespan", kind, flush=True)
                    await send({"type": f"lifespan.{kind}.complete"})
                    if kind == "shutdown":
                        return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"served"})
    """))
    code = ("import small_app; from pymongoose.asgi import serve; "
            "serve(small_app.app, 'http://127.0.0.1:0', access_log=True)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "lifespan startup"
        url = re.search(r"^Serving ASGI app at (http://[\d.:]+)/ \(1 worker\)$",
                        proc.stdout.readline())
        assert url is not None
        assert requests.get(url.group(1) + "/x?y=1", timeout=TIMEOUT).text == "served"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        kill_group(proc)  # the workers too, if the server did not stop them
    assert proc.returncode == 0
    assert out.strip().endswith("lifespan shutdown")
    assert '"GET /x?y=1 HTTP/1.1" 200 6' in err  # the access log
