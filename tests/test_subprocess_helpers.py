"""tests/subprocess_helpers.py: a child's whole process group goes when the test is done
with it, so nothing it forked can hold the output pipes open and hang the run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from subprocess_helpers import run_to_end, running

# Forks; the fork keeps stdout open and sleeps. The parent prints the fork's pid, then
# sleeps too (FORK_AND_SLEEP) or exits at once (FORK_AND_EXIT).
FORK = ("import os, sys, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(600)\n"
        "    os._exit(0)\n"
        "print('forked', pid, flush=True)\n")
FORK_AND_SLEEP = FORK + "time.sleep(600)\n"
FORK_AND_EXIT = FORK


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether ``pid`` has exited (or is a zombie awaiting its reaper) within the time."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_leaving_running_kills_what_the_child_forked() -> None:
    with running("-c", FORK_AND_SLEEP) as child:
        forked = int(child.wait_for(r"forked (\d+)").group(1))
    # Reaching this line means closing the pipes did not wait for the fork.
    assert gone(forked)


def test_run_to_end_kills_a_fork_left_holding_the_pipes() -> None:
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        run_to_end("-c", FORK_AND_EXIT, timeout=3)
    forked = [int(word) for word in str(expired.value.stdout).split() if word.isdigit()]
    assert forked and gone(forked[0])
