"""python -m pymongoose --wsgi / --asgi."""

from __future__ import annotations

import signal

import requests
import websocket
from subprocess_helpers import REPO, run_to_end, running

# The start-up line reads the same in every mode (static files: test_main.py).
URL_LINE = r"^Serving WSGI app at (http://127\.0\.0\.1:\d+)/ \(2 workers, 4 threads each\)$"


def test_wsgi_flask_app_with_two_workers_and_access_log() -> None:
    with running("-m", "pymongoose", "--wsgi", "tests.wsgi_flask_app:app", "--listen",
                 "http://127.0.0.1:0", "--workers", "2", "--threads", "4",
                 "--access-log") as child:
        url = child.wait_for(URL_LINE).group(1)
        with requests.Session() as s:
            r = s.get(url + "/", timeout=60)
            assert r.status_code == 200 and r.text.startswith("hello from flask")
            r = s.post(url + "/form", data={"name": "Ada"}, timeout=60)
            assert r.json()["name"] == "Ada"
        assert child.stop(signal.SIGTERM) == 0
        stderr = child.stderr()
    assert '"GET / HTTP/1.1" 200' in stderr
    assert '"POST /form HTTP/1.1" 200' in stderr


def test_wsgi_single_process_with_static_root() -> None:
    with running("-m", "pymongoose", "--wsgi", "tests.wsgi_flask_app", "--listen",
                 "http://127.0.0.1:0", "--root", "examples") as child:
        url = child.wait_for(URL_LINE.replace("2 workers, 4", "1 worker, 8")).group(1)
        assert requests.get(url + "/", timeout=60).text.startswith("hello from flask")
        static = requests.get(url + "/hello_http.py", timeout=60)
        assert static.content == (REPO / "examples" / "hello_http.py").read_bytes()
        assert child.stop(signal.SIGINT) == 0


def test_unresolvable_import_paths_exit_2() -> None:
    for path, message in (("no_such_module_xyz:app", "cannot import module"),
                          ("tests.wsgi_flask_app:nope", "has no attribute 'nope'"),
                          ("tests.wsgi_flask_app:os", "not a callable"),
                          ("a:b:c", "not an import path")):
        result = run_to_end("-m", "pymongoose", "--wsgi", path)
        assert result.returncode == 2, (path, result.stderr)
        assert message in result.stderr, (path, result.stderr)


def test_asgi_option_exits_2_on_what_it_cannot_serve() -> None:
    result = run_to_end("-m", "pymongoose", "--asgi", "no_such_module_xyz:app")
    assert result.returncode == 2
    assert "cannot import module" in result.stderr
    result = run_to_end("-m", "pymongoose", "--asgi", "x:app", "--threads", "2")
    assert result.returncode == 2 and "--threads applies to --wsgi only" in result.stderr


ASGI_URL_LINE = r"^Serving ASGI app at (http://127\.0\.0\.1:\d+)/ \(2 workers\)$"


def test_asgi_starlette_app_with_two_workers_root_and_access_log() -> None:
    with running("-m", "pymongoose", "--asgi", "tests.asgi_starlette_app:app", "--listen",
                 "http://127.0.0.1:0", "--workers", "2", "--root", "examples",
                 "--access-log") as child:
        url = child.wait_for(ASGI_URL_LINE).group(1)
        with requests.Session() as s:
            for _ in range(10):
                r = s.get(url + "/", timeout=60)
                assert r.status_code == 200 and r.text.startswith("hello from starlette")
                s.close()  # a new connection each time, so both workers get a turn
            assert s.post(url + "/echo", data="hi", timeout=60).json() == {"received": "hi"}
        static = requests.get(url + "/hello_http.py", timeout=60)
        assert static.content == (REPO / "examples" / "hello_http.py").read_bytes()
        ws = websocket.create_connection(url.replace("http", "ws") + "/ws", timeout=60)
        ws.send("ping")
        assert ws.recv() == "ping"
        ws.close()
        assert child.stop(signal.SIGTERM) == 0
        stderr = child.stderr()
    assert '"GET / HTTP/1.1" 200' in stderr
