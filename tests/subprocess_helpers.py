"""Run a Python program as a child process and read what it prints, with deadlines.

Shared by test_examples.py and test_main.py. Output is read by threads into a queue,
so waiting for a line is a ``queue.get`` with a timeout, never a sleep.

Each child leads a process group of its own (``start_new_session``): whatever it forks
(prefork workers) is killed with it, so a failed or timed-out test leaves nothing behind
that holds the output pipes open.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Generous: PyPy on a busy two-core machine takes a while to import cffi modules.
START_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group ``proc`` leads (started with ``start_new_session``),
    then reap ``proc``. Harmless once everything in the group has exited."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=EXIT_TIMEOUT)


def child_env() -> dict[str, str]:
    """The environment for a child: ours, unbuffered."""
    return dict(os.environ, PYTHONUNBUFFERED="1")


class Child:
    """A running ``python ARGS...`` whose stdout lines arrive in a queue."""

    def __init__(self, args: tuple[str, ...]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
            errors="replace", start_new_session=True,
        )
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        self._stderr: list[str] = []
        self.stdout_lines: list[str] = []  # the lines wait_for() has read so far
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def _drain(self, stream: IO[str]) -> None:
        self._stderr.append(stream.read())

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Read stdout lines until one matches ``pattern``; fail on EOF or the deadline."""
        try:
            while True:
                line = self._lines.get(timeout=timeout)
                if line is None:
                    self._fail(f"exited before printing a line matching {pattern!r}")
                self.stdout_lines.append(line)
                match = re.search(pattern, line)
                if match:
                    return match
        except queue.Empty:
            self._fail(f"printed no line matching {pattern!r} within {timeout} s")

    def stop(self, sig: int = signal.SIGINT, timeout: float = EXIT_TIMEOUT) -> int:
        """Send ``sig`` and return the exit status (fails if it does not exit in time)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._fail(f"still running {timeout} s after signal {sig}")

    def stderr(self) -> str:
        """Everything the child wrote to stderr (waits for it to exit)."""
        self.proc.wait(timeout=EXIT_TIMEOUT)
        for thread in self._threads:
            thread.join(timeout=EXIT_TIMEOUT)
        return "".join(self._stderr)

    def kill(self) -> None:
        """Kill the child and everything in its process group; wait for the output."""
        kill_group(self.proc)
        for thread in self._threads:
            thread.join(timeout=EXIT_TIMEOUT)

    def _fail(self, what: str) -> NoReturn:
        self.kill()
        pytest.fail(f"{' '.join(self.args)}: {what}\n"
                    f"stdout so far: {''.join(self.stdout_lines)!r}\n"
                    f"stderr: {''.join(self._stderr)!r}")


@contextlib.contextmanager
def running(*args: str) -> Iterator[Child]:
    """Start ``python ARGS...`` in the repository root; kill it if the block leaves it running."""
    child = Child(args)
    try:
        yield child
    finally:
        child.kill()
        assert child.proc.stdout is not None and child.proc.stderr is not None
        child.proc.stdout.close()
        child.proc.stderr.close()


def run_to_end(*args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS...`` to completion and capture its output."""
    with subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        errors="replace", start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:  # perhaps a fork left holding the pipes
            kill_group(proc)
            exc.stdout, exc.stderr = proc.communicate()  # all of it, as subprocess.run
            raise
        except BaseException:  # the test's own timeout
            kill_group(proc)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
