"""WSGI benchmark: hello-world Flask on pymongoose.wsgi vs gunicorn (sync, gthread) and
waitress, with 1 and 2 worker processes; medians of alternating rounds.

    python3 bench/wsgi_bench.py [--rounds 5] [--duration 4] [--no-pypy] [--publish]
    python3 bench/wsgi_bench.py --quick    # checks the harness, not the speed

Reuses bench/run.py's server start-up, pinning and wrk load generator (server on CPU 0,
wrk on CPU 1, 50 keep-alive connections). pymongoose also runs on PyPy when `pypy3` is
on PATH. Each row reports requests per second and requests per server CPU-second; each
ratio is the median of per-round ratios against the best peer (gunicorn or waitress) of
that round. Writes bench/out/wsgi.md (and bench/results/wsgi.md with --publish).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness  # bench/run.py, imported, not copied

BENCH = harness.BENCH
SERVER = BENCH / "servers" / "wsgi_server.py"
THREADS = 8
PEERS = ("gunicorn-sync", "gunicorn-gthread", "waitress")
# (kind, workers); waitress has no worker processes.
CONTENDERS = [
    ("pymongoose", 1), ("gunicorn-sync", 1), ("gunicorn-gthread", 1), ("waitress", 1),
    ("pymongoose", 2), ("gunicorn-sync", 2), ("gunicorn-gthread", 2),
]


class Row:
    """One server at one worker count: its command and the per-round figures."""

    def __init__(self, label: str, workers: int, cmd: list[str]) -> None:
        self.label, self.workers, self.cmd = label, workers, cmd
        self.rates: list[float] = []
        self.per_cpu: list[float] = []
        self.ratios: list[float] = []
        self.cpu_ratios: list[float] = []


def rows_for(workers: int, cpython: str, pypy: Optional[str]) -> list[Row]:
    """The contenders of one worker count, pymongoose on PyPy last when there is one."""
    rows = []
    for kind, n in CONTENDERS:
        if n != workers:
            continue
        label = "pymongoose (CPython)" if kind == "pymongoose" else kind
        rows.append(Row(label, n, [cpython, str(SERVER), kind, str(n)]))
    if pypy is not None:
        rows.append(Row("pymongoose (PyPy)", workers, [pypy, str(SERVER), "pymongoose",
                                                        str(workers)]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s: harness check")
    parser.add_argument("--no-pypy", action="store_true")
    parser.add_argument("--publish", action="store_true",
                        help="also write bench/results/wsgi.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.5
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    cpython = harness.make_venv(sys.executable, out / "venv-wsgi",
                                ["flask", "gunicorn", "waitress"])
    pypy = None
    if not args.no_pypy and shutil.which("pypy3"):
        pypy = harness.make_venv("pypy3", out / "venv-wsgi-pypy", ["flask"])
    table: list[Row] = []
    for workers in (1, 2):
        group = rows_for(workers, cpython, pypy)
        table += group
        with contextlib.ExitStack() as stack:
            servers = {row.label: stack.enter_context(harness.started(row.cmd, row.label,
                                                                      timeout=90))
                       for row in group}
            for rnd in range(args.rounds):
                order = group if rnd % 2 == 0 else group[::-1]
                rates, per_cpu = {}, {}
                for row in order:
                    warm = args.warmup * (3 if rnd == 0 and "PyPy" in row.label else 1)
                    if rnd > 0:
                        warm /= 4
                    rate, efficiency = harness.measure_with_cpu(servers[row.label],
                                                                args.duration, warm)
                    rates[row.label], per_cpu[row.label] = rate, efficiency
                    harness.log(f"round {rnd + 1}/{args.rounds}: {row.label:22s} x{workers} "
                                f"{rate:10,.0f} req/s {efficiency:10,.0f} req/CPU-s")
                best = max(rates[p] for p in PEERS if p in rates)
                best_cpu = max(per_cpu[p] for p in PEERS if p in per_cpu)
                for row in group:
                    row.rates.append(rates[row.label])
                    row.per_cpu.append(per_cpu[row.label])
                    row.ratios.append(rates[row.label] / best)
                    row.cpu_ratios.append(per_cpu[row.label] / best_cpu)
    write_report(table, args)
    return 0


def write_report(table: list[Row], args: argparse.Namespace) -> None:
    lines = [
        "# WSGI: hello-world Flask",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} UTC by `python3 bench/wsgi_bench.py` "
        f"on {harness.platform_line()}; {args.rounds} alternating rounds of "
        f"{args.duration:g} s, wrk with {harness.HTTP_CONNECTIONS} keep-alive connections "
        f"pinned to CPU 1, every server pinned to CPU 0 (so 2 workers share one core), "
        f"{THREADS} threads where the server has threads. The machine is shared with "
        "other jobs: treat differences under ~10% as noise.",
        "",
        "| server | workers | median req/s | rounds | vs fastest peer | "
        "req per server CPU-second | vs most efficient peer |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in table:
        rounds = ", ".join(f"{v:,.0f}" for v in row.rates)
        lines.append(f"| {row.label} | {row.workers} | {statistics.median(row.rates):,.0f} | "
                     f"{rounds} | {statistics.median(row.ratios):.2f}x | "
                     f"{statistics.median(row.per_cpu):,.0f} | "
                     f"{statistics.median(row.cpu_ratios):.2f}x |")
    lines += [
        "",
        "Medians over the rounds; each ratio is the median of per-round ratios against the "
        "best peer (gunicorn or waitress, same worker count) of the same round. req per "
        "server CPU-second = requests served / CPU time (user + system) the server's "
        "processes used meanwhile.",
        "",
        "Target: pymongoose >= 1.5x the fastest peer.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (BENCH / "out" / "wsgi.md").write_text(text)
    if args.publish:
        (BENCH / "results" / "wsgi.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
