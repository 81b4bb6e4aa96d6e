"""Start one WSGI contender on a free port and print ``PORT <n>`` once it answers.

    python wsgi_server.py pymongoose|gunicorn-sync|gunicorn-gthread|waitress WORKERS

Serves bench/servers/wsgi_hello.py:app. Stops (with its workers) on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THREADS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # a foreign server: polling its port is all we can do
    raise SystemExit("server did not start listening")


def main() -> int:
    kind, workers = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, HERE)
    if kind == "pymongoose":
        from wsgi_hello import app

        from pymongoose.wsgi import serve

        def ready(url: str) -> None:
            print(f"PORT {url.rsplit(':', 1)[1]}", flush=True)

        return serve(app, "http://127.0.0.1:0", workers=workers, threads=THREADS,
                     on_ready=ready)
    port = free_port()
    bind = f"127.0.0.1:{port}"
    if kind.startswith("gunicorn"):
        cmd = [sys.executable, "-m", "gunicorn", "-b", bind, "-w", str(workers),
               "--log-level", "warning", "--chdir", HERE]
        if kind == "gunicorn-gthread":
            cmd += ["-k", "gthread", "--threads", str(THREADS)]
        cmd.append("wsgi_hello:app")
    elif kind == "waitress":
        if workers != 1:
            raise SystemExit("waitress has no worker processes")
        cmd = [sys.executable, "-m", "waitress", "--listen", bind, f"--threads={THREADS}",
               "wsgi_hello:app"]
    else:
        raise SystemExit(f"unknown contender {kind!r}")
    proc = subprocess.Popen(cmd, cwd=HERE)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    wait_until_listening(port, proc)
    print(f"PORT {port}", flush=True)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
