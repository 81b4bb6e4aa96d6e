"""A signal that arrives while workers.run() is still starting its children stops it
cleanly: no child is forked after the parent closed the listening socket."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import os, signal
    from pymongoose import Manager
    from pymongoose.workers import run, serve_manager

    def worker_main(ctx):
        mgr = Manager()
        mgr.listen_socket(ctx.sock)
        serve_manager(ctx, mgr)

    # Ctrl-C as soon as the address is printed, before any worker is forked.
    code = run("http://127.0.0.1:0", worker_main, workers=3,
               on_ready=lambda url: os.kill(os.getpid(), signal.SIGINT))
    print("exit", code)
    raise SystemExit(code)
""")


def test_sigint_before_the_workers_start_exits_cleanly() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit 0" in done.stdout
    assert "failed" not in done.stderr, done.stderr
