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
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as harness  # noqa: E402 - bench/run.py, next to this file

SERVER = BENCH / "servers" / "asgi_server.py"
PEERS = ("uvicorn (httptools, uvloop)", "granian (uvloop)")


class _Command:
    """What bench/run.py's callgrind_instructions expects of a contender."""

    def __init__(self, label: str, cmd: list[str]) -> None:
        self.label = label
        self._cmd = cmd

    def command(self, mode: str, paths: object) -> list[str]:
        return self._cmd


def instructions(servers: list[tuple[str, list[str]]], out: Path,
                 count: int) -> dict[str, Optional[float]]:
    """Instructions per request under callgrind (one keep-alive client, warm server).

    Granian is left out: its worker is a separate process started by our wrapper."""
    paths = harness.Paths(out, Path(), Path(), out, out / "post.lua")
    found: dict[str, Optional[float]] = {}
    for label, cmd in servers:
        if "granian" in label or "PyPy" in label:
            continue
        harness.log(f"callgrind: {label}")
        found[label] = harness.callgrind_instructions(
            _Command(label, cmd), paths, count)  # type: ignore[arg-type]
    return found


def contenders(cpython: str, pypy: Optional[str],
               workers: int = 1) -> list[tuple[str, list[str]]]:
    n = str(workers)
    found = [
        ("pymongoose (CPython, uvloop)", [cpython, str(SERVER), "pymongoose", n]),
        (PEERS[0], [cpython, str(SERVER), "uvicorn", n]),
        (PEERS[1], [cpython, str(SERVER), "granian", n]),
    ]
    if pypy is not None:
        found.append(("pymongoose (PyPy)", [pypy, str(SERVER), "pymongoose", n]))
    return found


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--no-pypy", action="store_true")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes per server (> 1: servers may use both CPUs)")
    parser.add_argument("--callgrind", type=int, default=2000, metavar="N",
                        help="requests measured under callgrind (0: skip)")
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
    servers = contenders(cpython, pypy, args.workers)
    if args.workers > 1:  # the servers get every CPU; wrk still runs on CPU 1
        harness.SERVER_CORE = ",".join(str(i) for i in range(os.cpu_count() or 1))
    values: dict[str, list[float]] = {label: [] for label, _ in servers}
    ratios: dict[str, list[float]] = {label: [] for label, _ in servers}
    per_cpu: dict[str, list[float]] = {label: [] for label, _ in servers}
    cpu_ratios: dict[str, list[float]] = {label: [] for label, _ in servers}
    with contextlib.ExitStack() as stack:
        running = {label: stack.enter_context(harness.started(cmd, label))
                   for label, cmd in servers}
        for rnd in range(rounds):
            order = servers if rnd % 2 == 0 else servers[::-1]
            this_round, this_cpu = {}, {}
            for label, _ in order:
                warm = warmup * (3 if rnd == 0 and "PyPy" in label else 1)
                if rnd > 0:
                    warm /= 4
                value, efficiency = harness.measure_with_cpu(running[label], duration, warm)
                this_round[label], this_cpu[label] = value, efficiency
                harness.log(f"  round {rnd + 1}/{rounds}: {label:30s} {value:10,.0f} req/s "
                            f"{efficiency:10,.0f} req/CPU-s")
            best_peer = max(this_round[p] for p in PEERS)
            best_cpu = max(this_cpu[p] for p in PEERS)
            for label, value in this_round.items():
                values[label].append(value)
                ratios[label].append(value / best_peer)
                per_cpu[label].append(this_cpu[label])
                cpu_ratios[label].append(this_cpu[label] / best_cpu)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {harness.platform_line()}; "
        f"{rounds} alternating rounds of {duration:g} s, wrk -t1 -c50 on CPU 1, "
        f"servers on CPU {harness.SERVER_CORE}, {args.workers} worker(s) each.",
        "",
        "| server | req/s | vs fastest peer | req per server CPU-second | vs most "
        "efficient peer |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, _ in servers:
        lines.append(f"| {label} | {statistics.median(values[label]):,.0f} | "
                     f"{statistics.median(ratios[label]):.2f}x | "
                     f"{statistics.median(per_cpu[label]):,.0f} | "
                     f"{statistics.median(cpu_ratios[label]):.2f}x |")
    lines += [
        "",
        "Medians over the rounds; each ratio is the median of per-round ratios against the "
        "best peer (uvicorn or granian) of the same round. req per server CPU-second = "
        "requests served / CPU time (user + system) the server's processes used meanwhile.",
    ]
    if args.callgrind and not args.quick and args.workers == 1:
        counted = instructions(servers, out, args.callgrind)
        lines += ["", "| callgrind: instructions per request (1 keep-alive client) | "
                  "instructions |", "| --- | ---: |"]
        lines += [f"| {label} | {value:,.0f} |" for label, value in counted.items()
                  if value is not None]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "asgi.md").write_text(text)
    if args.publish:
        name = "asgi.md" if args.workers == 1 else f"asgi-{args.workers}workers.md"
        (BENCH / "results" / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
