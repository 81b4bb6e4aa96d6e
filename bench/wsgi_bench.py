"""WSGI benchmark: hello-world Flask on pymongoose.wsgi vs gunicorn (sync, gthread) and
waitress, with 1 and 2 worker processes; medians of alternating rounds.

    python3 bench/wsgi_bench.py [--rounds 5] [--duration 4] [--quick]

Reuses bench/run.py's server start-up, pinning and wrk load generator (server on CPU 0,
wrk on CPU 1, 50 keep-alive connections). Writes bench/results/wsgi.md.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as harness  # bench/run.py, imported, not copied

BENCH = harness.BENCH
THREADS = 8
CONTENDERS = [
    ("pymongoose", 1), ("gunicorn-sync", 1), ("gunicorn-gthread", 1), ("waitress", 1),
    ("pymongoose", 2), ("gunicorn-sync", 2), ("gunicorn-gthread", 2),
]
HELLO = harness.Workload(name="hello", title="Flask hello world", mode="hello",
                         unit="req/s", contenders=())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s: harness check")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.5
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    python = harness.make_venv(sys.executable, out / "venv-wsgi",
                               ["flask", "gunicorn", "waitress"])
    paths = harness.Paths(out, Path("-"), Path("-"), out, out / "unused.lua")
    values: dict[str, list[float]] = {}
    for workers in (1, 2):
        group = [(kind, n) for kind, n in CONTENDERS if n == workers]
        with contextlib.ExitStack() as stack:
            servers = {}
            for kind, n in group:
                cmd = [python, str(BENCH / "servers" / "wsgi_server.py"), kind, str(n)]
                servers[(kind, n)] = stack.enter_context(harness.started(cmd, kind, timeout=90))
            for rnd in range(args.rounds):
                order = group if rnd % 2 == 0 else group[::-1]
                for kind, n in order:
                    warm = args.warmup if rnd == 0 else args.warmup / 4
                    value = harness.measure(HELLO, servers[(kind, n)], args.duration, warm,
                                            paths)
                    label = f"{kind} x{n}"
                    values.setdefault(label, []).append(value)
                    harness.log(f"round {rnd + 1}/{args.rounds}: {label:22s} {value:10,.0f} req/s")
    write_report(values, args)
    return 0


def write_report(values: dict[str, list[float]], args: argparse.Namespace) -> None:
    medians = {label: statistics.median(v) for label, v in values.items()}
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
        "| server | workers | median req/s | rounds | vs fastest peer (same workers) |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for workers in (1, 2):
        peers = [m for label, m in medians.items()
                 if label.endswith(f"x{workers}") and not label.startswith("pymongoose")]
        best = max(peers) if peers else None
        for label, med in medians.items():
            if not label.endswith(f"x{workers}"):
                continue
            kind = label.rsplit(" ", 1)[0]
            rounds = ", ".join(f"{v:,.0f}" for v in values[label])
            ratio = f"{med / best:.2f}x" if best else "-"
            lines.append(f"| {kind} | {workers} | {med:,.0f} | {rounds} | {ratio} |")
    lines += ["", "Target: pymongoose >= 1.5x the fastest peer.", ""]
    target = BENCH / "results" / "wsgi.md"
    target.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
