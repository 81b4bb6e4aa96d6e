"""ASGI benchmark: hello-world Starlette on pymongoose.asgi, uvicorn and granian.

    python3 bench/asgi_bench.py            # 5 alternating rounds of 4 s per server
    python3 bench/asgi_bench.py --quick    # checks the harness, not the speed

Reuses bench/run.py's machinery: venvs, servers pinned to CPU 0 and wrk (-t1 -c50,
keep-alive) pinned to CPU 1, alternating order per round, medians. Each ratio is taken
per round against the fastest peer (uvicorn or granian) of that round, then the median
of those ratios is reported. Writes bench/out/asgi.md (and bench/results/asgi.md with
--publish).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
from pathlib import Path
from typing import Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as harness  # noqa: E402 - bench/run.py, next to this file

SERVER = BENCH / "servers" / "asgi_server.py"
PEERS = ("uvicorn (httptools, uvloop)", "granian (uvloop)")
WORKLOAD = harness.Workload("asgi-hello", "Starlette hello world, 50 keep-alive conns",
                            "asgi", "req/s", ())


def contenders(cpython: str, pypy: Optional[str]) -> list[tuple[str, list[str]]]:
    found = [
        ("pymongoose (CPython, uvloop)", [cpython, str(SERVER), "pymongoose"]),
        (PEERS[0], [cpython, str(SERVER), "uvicorn"]),
        (PEERS[1], [cpython, str(SERVER), "granian"]),
    ]
    if pypy is not None:
        found.append(("pymongoose (PyPy)", [pypy, str(SERVER), "pymongoose"]))
    return found


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--no-pypy", action="store_true")
    parser.add_argument("--publish", action="store_true",
                        help="also write bench/results/asgi.md")
    args = parser.parse_args(argv)
    rounds, duration, warmup = (1, 1.0, 1.0) if args.quick else (args.rounds, args.duration, 2.0)
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    cpython = harness.make_venv(sys.executable, out / "venv-asgi-cpython",
                                ["starlette", "uvicorn", "httptools", "uvloop", "granian"])
    pypy = None
    if not args.no_pypy and shutil.which("pypy3"):
        pypy = harness.make_venv("pypy3", out / "venv-asgi-pypy", ["starlette"])
    paths = harness.Paths(out, Path(), Path(), out, out / "post.lua")
    servers = contenders(cpython, pypy)
    values: dict[str, list[float]] = {label: [] for label, _ in servers}
    ratios: dict[str, list[float]] = {label: [] for label, _ in servers}
    with contextlib.ExitStack() as stack:
        running = {label: stack.enter_context(harness.started(cmd, label))
                   for label, cmd in servers}
        for rnd in range(rounds):
            order = servers if rnd % 2 == 0 else servers[::-1]
            this_round = {}
            for label, _ in order:
                warm = warmup * (3 if rnd == 0 and "PyPy" in label else 1)
                if rnd > 0:
                    warm /= 4
                value = harness.measure(WORKLOAD, running[label], duration, warm, paths)
                this_round[label] = value
                harness.log(f"  round {rnd + 1}/{rounds}: {label:30s} {value:10,.0f} req/s")
            best_peer = max(this_round[p] for p in PEERS)
            for label, value in this_round.items():
                values[label].append(value)
                ratios[label].append(value / best_peer)
    lines = [
        f"Measured {harness.time.strftime('%Y-%m-%d')} on {harness.platform_line()}; "
        f"{rounds} alternating rounds of {duration:g} s, wrk -t1 -c50 on CPU 1, "
        "servers on CPU 0, one worker each.",
        "",
        "| server | median req/s | vs fastest peer (median of per-round ratios) |",
        "| --- | ---: | ---: |",
    ]
    for label, _ in servers:
        lines.append(f"| {label} | {statistics.median(values[label]):,.0f} | "
                     f"{statistics.median(ratios[label]):.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "asgi.md").write_text(text)
    if args.publish:
        (BENCH / "results" / "asgi.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
