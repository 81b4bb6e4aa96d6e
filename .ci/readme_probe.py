"""Run the README's main-job command in a folder, probe the server it starts, stop it.

Usage: python3 .ci/readme_probe.py FOLDER COMMAND

COMMAND runs with ``bash -c`` in FOLDER (a fresh clone) as the leader of its own process
group. Once it prints the start-up line (``Serving ... at http://HOST:PORT/ (...)``):
README.md is fetched with curl and compared with the file, the folder listing of ``/`` is
checked (README.md listed, .git not), a WebSocket text message sent to /ws must come back
unchanged (a small raw-socket client: the standard library only), then the whole group
gets SIGINT, as Ctrl-C in a terminal sends it, and every command must exit with status 0.
Each phase's wall time is printed. Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Optional

READY = re.compile(r"^Serving .* at (http://(127\.0\.0\.1):(\d+))/ \(")
START_TIMEOUT = 1200.0  # includes building the package on a busy machine
EXIT_TIMEOUT = 60.0
IO_TIMEOUT = 30.0


class Failure(Exception):
    """A probe that did not see what the README promises."""


def ws_echo(host: str, port: int, text: str) -> str:
    """Send ``text`` to ws://host:port/ws as one masked text frame; return the reply."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((host, port), timeout=IO_TIMEOUT) as sock:
        sock.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        reader = sock.makefile("rb")
        status = reader.readline()
        if b" 101 " not in status:
            raise Failure(f"WebSocket upgrade answered {status!r}")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        headers = []
        while (line := reader.readline()) not in (b"\r\n", b""):
            headers.append(line.strip().lower())
        if b"sec-websocket-accept: " + accept.lower() not in headers:
            raise Failure(f"no matching Sec-WebSocket-Accept in {headers!r}")
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert len(payload) < 126
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        first, second = reader.read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", reader.read(2))
        reply = reader.read(length)
        if first != 0x81:
            raise Failure(f"expected one text frame back, got opcode byte {first:#x}")
        sock.sendall(bytes([0x88, 0x80]) + os.urandom(4))  # close, no status
        return reply.decode()


def curl(*args: str) -> bytes:
    return subprocess.run(["curl", "-sS", "--fail", "--noproxy", "*", "--max-time",
                           str(int(IO_TIMEOUT)), *args],
                          capture_output=True, check=True, timeout=IO_TIMEOUT + 5).stdout


def main() -> int:
    folder, command = Path(sys.argv[1]), sys.argv[2]
    print(f"$ {command}", flush=True)
    output: deque[str] = deque(maxlen=60)
    ready: list[str] = []
    seen_ready = threading.Event()
    proc = subprocess.Popen(["bash", "-c", command], cwd=folder, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if not seen_ready.is_set() and READY.match(line):
                ready.append(line.strip())
                seen_ready.set()
        seen_ready.set()  # end of output: the command exited

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    phase = time.monotonic()

    def took(what: str) -> None:
        nonlocal phase
        now = time.monotonic()
        print(f"  {now - phase:6.1f}s  {what}", flush=True)
        phase = now

    try:
        if not seen_ready.wait(START_TIMEOUT) or not ready:
            raise Failure(f"no start-up line within {START_TIMEOUT:.0f} s "
                          f"(exit status {proc.poll()})")
        print(f"  {ready[0]}")
        took("venv, build, install, start (up to the start-up line)")
        found = READY.match(ready[0])
        assert found is not None
        url, host, port = found.group(1), found.group(2), int(found.group(3))

        readme = curl(url + "/README.md")
        if readme != (folder / "README.md").read_bytes():
            raise Failure("GET /README.md did not return the file")
        listing = curl(url + "/").decode("utf-8", "replace")
        if "README.md" not in listing or ".git" in listing:
            raise Failure(f"the listing of / should show README.md and hide .git: {listing!r}")
        took("curl: README.md and the listing of /")

        message = "hello from CI ✓"
        echoed = ws_echo(host, port, message)
        if echoed != message:
            raise Failure(f"WebSocket echo returned {echoed!r}, sent {message!r}")
        took("WebSocket echo at /ws")

        os.killpg(proc.pid, signal.SIGINT)
        status = proc.wait(timeout=EXIT_TIMEOUT)
        reader.join(EXIT_TIMEOUT)
        took(f"SIGINT to the process group: exit status {status}")
        if status != 0:
            raise Failure(f"exit status {status} after SIGINT, expected 0")
        if any("Traceback" in line for line in output):
            raise Failure("a traceback was printed")
    except (Failure, subprocess.SubprocessError, OSError) as exc:
        print(f"FAILED: {exc}\n--- last output of the command ---\n{''.join(output)}",
              file=sys.stderr)
        return 1
    finally:
        kill_group(proc)
    return 0


def kill_group(proc: subprocess.Popen[str]) -> Optional[int]:
    """SIGKILL whatever of the command's process group is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None


if __name__ == "__main__":
    sys.exit(main())
