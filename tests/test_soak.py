"""bench/soak.py in its --quick mode: the script works and the server holds up.

The full run (a million requests) is a documented command, not part of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _tools import require

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_soak_has_no_failures(tmp_path: Path) -> None:
    require("cc")
    out = tmp_path / "soak.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "soak.py"), "--quick", "--idle", "8000",
         "--out", str(out)],
        capture_output=True, text=True, timeout=280, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["failures"] == []
    http, ws, idle = (figures["figures"][k] for k in ("http", "ws", "idle"))
    assert (http["requests"], http["ok"], http["failed"]) == (20_000, 20_000, 0)
    assert http["connections"] == 2_000
    assert set(http["vmrss_kb"]) == {"start", "10%", "50%", "100%"}
    assert (ws["ok"], ws["failed"]) == (2_000, 0)
    assert (idle["ready"], idle["errors"], idle["left_open_after_close"]) == (8000, 0, 0)
    assert idle["server_connections_while_held"] == 8000
    # Memory comes back once they close. Before the glue trimmed after closes too,
    # glibc kept over half of what the connections had added.
    rss = idle["vmrss_kb"]
    assert rss["after"] - rss["before"] <= 0.2 * (rss["with"] - rss["before"]), rss
    assert out.read_text() in proc.stdout
