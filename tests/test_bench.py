"""The benchmark harness works end to end in --quick mode (it measures nothing here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _tools import require

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_benchmark_produces_the_table(tmp_path: Path) -> None:
    require("wrk", "cc")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--workloads",
         "hello,ws,idle", "--idle-connections", "200", "--cpython", sys.executable,
         "--pypy", "none", "--no-cymongoose", "--no-callgrind", "--no-chart",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=280, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    assert table in proc.stdout
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"hello", "ws", "idle"}
    for workload in ("hello", "ws"):
        rows = results[workload]
        assert set(rows) == {"C server", "pymongoose", "pymongoose fast"}
        for label, row in rows.items():
            assert row["value"] > 0, (workload, label)
            assert f"| {label} |" in table
    assert set(results["idle"]) == {"C server", "pymongoose fast"}
    # Progress lines go to stderr, one per measurement.
    assert proc.stderr.count("round 1/1") == 8
