"""WebSocket echo with and without permessage-deflate (RFC 7692), and what it costs
connections that did not negotiate it.

    python3 bench/ws_deflate_bench.py --base-python /tmp/ws-base/.venv/bin/python \\
        --cym-python /tmp/ws-cym/bin/python [--rounds 5] [--duration 3]

Text messages of 64 bytes and 16 KB (JSON-like, compressible) are echoed by: the C
server (Mongoose, no compression), cymongoose (none), pymongoose built from another
checkout (``--base-python``: its venv; none), this checkout's pymongoose without an
offer, and with ``permessage-deflate`` offered: without context takeover on both
sides (every message compressed on its own, both ways), and with the server keeping
its context (the client still resets: bench/loadgen sends one pre-compressed frame).
Every server is pinned to CPU 0 and the load generator to CPU 1 (bench/run.py's
harness); contenders alternate within each round; medians of per-round ratios.

Then callgrind counts the instructions per echoed message (one client, one message in
flight, after a warm-up) of the base build and this checkout, no compression: the
deterministic answer to "does the extension cost the others anything".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as harness  # noqa: E402  (bench/run.py: building, pinning, starting)

OFFER_RESET = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
OFFER_TAKEOVER = "permessage-deflate; client_no_context_takeover"
CONNECTIONS = 50
TAIL = b"\x00\x00\xff\xff"


def message_text(size: int) -> bytes:
    """``size`` bytes of JSON-like ASCII text, the same every run."""
    rng = random.Random(6455)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
             "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa"]
    parts = []
    total = 0
    while total < size:
        item = json.dumps({"id": rng.randrange(100000), "name": rng.choice(words),
                           "tags": rng.sample(words, 3), "score": round(rng.random(), 4)})
        parts.append(item)
        total += len(item) + 1
    return ("[" + ",".join(parts))[:size].encode()


def deflated(data: bytes) -> bytes:
    """A permessage-deflate payload, made without context (RFC 7692 7.2.1)."""
    comp = zlib.compressobj(wbits=-15)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


@dataclass(frozen=True)
class Contender:
    label: str
    command: list[str]
    offer: Optional[str] = None  # Sec-WebSocket-Extensions the load generator sends


@dataclass
class Result:
    values: list[float] = field(default_factory=list)
    vs_c: list[float] = field(default_factory=list)
    vs_cym: list[float] = field(default_factory=list)
    vs_base: list[float] = field(default_factory=list)


def load(loadgen: Path, port: int, plain: Path, packed: Path, offer: Optional[str],
         inflight: int, seconds: float, warmup: float) -> float:
    cmd = [str(loadgen), "ws", "--port", str(port), "--path", "/ws", "--text",
           "--connections", str(CONNECTIONS), "--inflight", str(inflight),
           "--duration", f"{seconds:g}", "--warmup", f"{warmup:g}"]
    if offer is not None:
        cmd += ["--extensions", offer, "--rsv1", "--payload", str(packed)]
    else:
        cmd += ["--payload", str(plain)]
    proc = harness.run(harness.pinned(harness.LOAD_CORE, cmd))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("errors") or result.get("connections") != CONNECTIONS:
        harness.log(f"  loadgen: {result}")
    return float(result["msgs_per_sec"])


def run_size(size: int, contenders: list[Contender], loadgen: Path, out: Path,
             rounds: int, seconds: float, warmup: float) -> dict[str, Result]:
    plain, packed = out / f"msg{size}.txt", out / f"msg{size}.deflate"
    text = message_text(size)
    plain.write_bytes(text)
    packed.write_bytes(deflated(text))
    inflight = 16 if size <= 1024 else 2
    results = {c.label: Result() for c in contenders}
    with contextlib.ExitStack() as stack:
        servers = {c.label: stack.enter_context(harness.started(c.command, c.label))
                   for c in contenders}
        for rnd in range(rounds):
            order = contenders if rnd % 2 == 0 else contenders[::-1]
            values = {}
            for c in order:
                warm = warmup if rnd == 0 else warmup / 4
                values[c.label] = load(loadgen, servers[c.label].port, plain, packed, c.offer,
                                       inflight, seconds, warm)
                harness.log(f"  {size} B round {rnd + 1}/{rounds}: {c.label:34s} "
                            f"{values[c.label]:12,.0f} msg/s")
            for label, value in values.items():
                res = results[label]
                res.values.append(value)
                for key, ref in (("vs_c", "C server"), ("vs_cym", "cymongoose"),
                                 ("vs_base", "pymongoose main, no offer")):
                    if values.get(ref):
                        getattr(res, key).append(value / values[ref])
    return results


# -- callgrind: instructions per echoed message, no compression --------------------------

def ws_session(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: cHltb25nb29zZS1iZW5jaA==\r\nSec-WebSocket-Version: 13\r\n"
                 b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    return sock


def echo_messages(sock: socket.socket, text: bytes, count: int) -> None:
    """``count`` text messages, each sent once the previous echo arrived."""
    mask = b"\x01\x02\x03\x04"
    size = len(text)
    head = bytes([0x81, 0x80 | (size if size < 126 else 126)])
    if size >= 126:
        head += struct.pack("!H", size)
    frame = head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    expect = 2 + (2 if size >= 126 else 0) + size
    for _ in range(count):
        sock.sendall(frame)
        got = 0
        while got < expect:
            chunk = sock.recv(expect - got)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            got += len(chunk)


def instructions_per_message(python: str, size: int, count: int, out: Path,
                             label: str) -> Optional[float]:
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        harness.log("valgrind not installed: no instruction counts")
        return None
    out_file = out / f"callgrind.{label}.{size}.out"
    for stale in out.glob(out_file.name + "*"):
        stale.unlink()
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out_file}"]
    command = [python, str(BENCH / "servers" / "py_server.py"), "pymongoose", "ws-fast"]
    text = message_text(size)
    with harness.started(command, label, wrap=wrap, timeout=300) as server, \
            ws_session(server.port) as sock:
        echo_messages(sock, text, 300)  # warm up
        harness.run(["callgrind_control", "-i", "on", str(server.proc.pid)])
        echo_messages(sock, text, count)
        harness.run(["callgrind_control", "-i", "off", str(server.proc.pid)])
    total = 0
    for dump in out.glob(out_file.name + "*"):
        found = re.findall(r"^(?:summary|totals):\s+(\d+)", dump.read_text(errors="replace"),
                           re.M)
        total += max((int(n) for n in found), default=0)
    return total / count if total else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base-python", required=True,
                        help="python of a venv with the pymongoose build to compare with")
    parser.add_argument("--cym-python", help="python of a venv with cymongoose")
    parser.add_argument("--python", default=sys.executable,
                        help="python of a venv with this checkout's pymongoose")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--callgrind-messages", type=int, default=3000)
    parser.add_argument("--out", default=str(BENCH / "out-ws"))
    parser.add_argument("--callgrind-only", action="store_true",
                        help="only the instruction counts, no throughput rounds")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    c_server, loadgen = harness.build_native(out, True)
    server = str(BENCH / "servers" / "py_server.py")
    plain = [
        Contender("C server", [str(c_server), "ws"]),
        Contender("pymongoose main, no offer", [args.base_python, server, "pymongoose",
                                                "ws-fast"]),
        Contender("pymongoose, no offer", [args.python, server, "pymongoose", "ws-fast"]),
        Contender("pymongoose deflate, no takeover", [args.python, server, "pymongoose",
                                                      "ws-fast"], OFFER_RESET),
        Contender("pymongoose deflate, server takeover", [args.python, server, "pymongoose",
                                                          "ws-fast"], OFFER_TAKEOVER),
    ]
    if args.cym_python:
        plain.insert(1, Contender("cymongoose", [args.cym_python, server, "cymongoose", "ws"]))
    report = {}
    for size in () if args.callgrind_only else (64, 16384):
        harness.log(f"WebSocket echo of {size}-byte text messages")
        report[size] = run_size(size, plain, loadgen, out, args.rounds, args.duration,
                                args.warmup)
    # Twice each, alternating: how far apart two runs of one build are is the noise.
    counts: dict[str, dict[int, list[float]]] = {"base": {}, "branch": {}}
    for attempt in range(2):
        for label, python in (("base", args.base_python), ("branch", args.python)):
            for size in (64, 16384):
                harness.log(f"callgrind: {label}, {size} B, run {attempt + 1}")
                value = instructions_per_message(python, size, args.callgrind_messages, out,
                                                 label)
                if value is not None:
                    counts[label].setdefault(size, []).append(value)
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs "
             f"({harness.platform_line()}); {args.rounds} alternating rounds of "
             f"{args.duration:g} s, {CONNECTIONS} connections; medians (min-max).", ""]
    for size, results in report.items():
        lines += [f"### {size}-byte text messages", "",
                  "| server | msg/s | vs C | vs cymongoose | vs main build |",
                  "|---|---|---|---|---|"]
        for label, res in results.items():
            def ratio(values: list[float]) -> str:
                if not values:
                    return "-"
                return (f"{statistics.median(values):.2f}x "
                        f"({min(values):.2f}-{max(values):.2f})")
            lines.append(f"| {label} | {statistics.median(res.values):,.0f} "
                         f"({min(res.values):,.0f}-{max(res.values):,.0f}) | "
                         f"{ratio(res.vs_c) if label != 'C server' else '-'} | "
                         f"{ratio(res.vs_cym) if label != 'cymongoose' else '-'} | "
                         f"{ratio(res.vs_base)} |")
        lines.append("")
    lines += ["### callgrind: instructions per echoed message, no compression "
              f"({args.callgrind_messages} messages, one in flight)", "",
              "| size | main build (2 runs) | this branch (2 runs) | difference of means |",
              "|---|---|---|---|"]
    for size in (64, 16384):
        base, branch = counts["base"].get(size, []), counts["branch"].get(size, [])
        if not base or not branch:
            lines.append(f"| {size} B | - | - | - |")
            continue
        b, n = statistics.mean(base), statistics.mean(branch)
        lines.append(f"| {size} B | {' / '.join(f'{v:,.0f}' for v in base)} | "
                     f"{' / '.join(f'{v:,.0f}' for v in branch)} | "
                     f"{n - b:+,.0f} ({(n - b) / b:+.2%}) |")
    text = "\n".join(lines) + "\n"
    (out / "ws_deflate.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
