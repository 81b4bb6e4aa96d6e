"""MQTT test helpers: a real mosquitto broker on 127.0.0.1, and polling until done.

mosquitto cannot listen on port 0, so a free port is found by binding port 0 and
closing it; when mosquitto still loses the race (it exits), another port is tried.
Readiness is its own log line, then a TCP connect: no sleeps.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from pymongoose import Manager

TIMEOUT = 10.0


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mosquitto:
    """A running mosquitto: its URL and its log so far."""

    port: int
    proc: subprocess.Popen[str]
    log: list[str]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def _start(config_dir: Path, extra: str) -> Optional[Mosquitto]:
    port = free_port()
    conf = config_dir / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\n"
                    "log_type error\nlog_type warning\nlog_type notice\n"
                    "log_type information\n" + extra)
    if os.geteuid() == 0:  # else mosquitto drops to its own user, who cannot read tmp_path
        with conf.open("a") as f:
            f.write("user root\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    lines: queue.Queue[Optional[str]] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:  # exited: most likely the port was taken meanwhile
            proc.wait(timeout=TIMEOUT)
            if not any("Address already in use" in entry for entry in log):
                raise AssertionError("mosquitto exited: " + "".join(log))
            return None
        if " running" in line:
            break
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass
    return Mosquitto(port, proc, log)


@contextlib.contextmanager
def mosquitto(config_dir: Path, extra: str = "allow_anonymous true\n") -> Iterator[Mosquitto]:
    """Run mosquitto with ``extra`` configuration lines until the block ends."""
    broker = None
    for _attempt in range(5):
        broker = _start(config_dir, extra)
        if broker is not None:
            break
    assert broker is not None, "mosquitto would not start"
    try:
        yield broker
    finally:
        broker.proc.terminate()
        try:
            broker.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            broker.proc.kill()
            broker.proc.wait(timeout=TIMEOUT)


def poll_until(manager: Manager, done: Callable[[], Any], timeout: float = TIMEOUT,
               what: str = "the expected events") -> None:
    """Poll ``manager`` until ``done()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        manager.poll(20)
