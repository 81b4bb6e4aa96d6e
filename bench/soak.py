"""Soak test: a pymongoose server in a subprocess under sustained load, its memory watched.

    python3 bench/soak.py                    # full run, a few minutes
    python3 bench/soak.py --quick            # 20,000 requests: checks the script works
    python3 bench/soak.py --python /path/to/pypy-venv/bin/python   # the server on PyPy

Phases, against one server process (the quick-start handler with ``events=``):

1. HTTP with connection churn: ``--requests`` GETs, a new connection every
   ``--per-connection`` requests (sent pipelined, read back and checked byte for byte),
   from ``--workers`` client processes. The server's VmRSS is read at 10 %, 50 % and
   100 %; growth from 10 % (after warm-up) to 100 % must stay under ``--max-growth``.
2. WebSocket echo: ``--ws-messages`` messages over ``--ws-connections`` connections.
3. Idle connections: ``--idle`` keep-alive connections opened by bench/loadgen, held,
   then closed; VmRSS before, while held, and once the server has closed them all.

Every request and message must succeed. Prints a Markdown report (``--out`` also writes
it, plus the figures as JSON next to it) and exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# The server: the hello handler with its events declared, plus /stats for the soak's
# own bookkeeping.
SERVER = r"""
import json, resource, sys
from pymongoose import Manager, MG_EV_HTTP_MSG, MG_EV_WS_MSG

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        if data.uri == "/ws":
            conn.ws_upgrade(data)
        elif data.uri == "/stats":
            conn.reply_json({"connections": len(mgr.connections)})
        else:
            conn.reply(200, "ok")
    elif ev == MG_EV_WS_MSG:
        conn.ws_send(data.data, data.op)

mgr = Manager()
listener = mgr.listen("http://127.0.0.1:0", handler, events=(MG_EV_HTTP_MSG, MG_EV_WS_MSG))
print(listener.local_addr[1], flush=True)
mgr.run()
"""

REQUEST = b"GET /hello HTTP/1.1\r\nHost: soak\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 2\r\n\r\nok")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def vmrss_kb(pid: int) -> int:
    """The process's resident set size, in KiB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionError("server closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def http_worker(port: int, requests: int, per_connection: int) -> tuple[int, int]:
    """Send ``requests`` GETs, a fresh connection every ``per_connection``: (ok, failed)."""
    ok = failed = 0
    while ok + failed < requests:
        batch = min(per_connection, requests - ok - failed)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(REQUEST * batch)
                answer = recv_exactly(sock, len(RESPONSE) * batch)
            good = answer.count(RESPONSE) if answer == RESPONSE * batch else 0
        except OSError:
            good = 0
        ok += good
        failed += batch - good
    return ok, failed


def ws_frame(payload: bytes, mask: bytes = b"\x12\x34\x56\x78") -> bytes:
    """One masked binary frame (payloads under 64 KiB)."""
    size = len(payload)
    head = bytes([0x82, 0x80 | size]) if size < 126 else bytes([0x82, 0xFE]) + struct.pack(
        ">H", size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_worker(port: int, messages: int, window: int) -> tuple[int, int]:
    """Echo ``messages`` binary messages over one connection, ``window`` in flight."""
    ok = failed = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: c29hay1zb2FrLXNvYWsh\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("no handshake")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head[:40].decode("latin-1"))
            pending = head.split(b"\r\n\r\n", 1)[1]
            sent = 0
            while ok + failed < messages:
                batch = min(window, messages - sent)
                payloads = [b"m%09d" % (sent + i) for i in range(batch)]
                sock.sendall(b"".join(ws_frame(p) for p in payloads))
                sent += batch
                for expected in payloads:
                    need = 2 + len(expected)
                    while len(pending) < need:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise ConnectionError("server closed the connection")
                        pending += chunk
                    frame, pending = pending[:need], pending[need:]
                    if frame == bytes([0x82, len(expected)]) + expected:
                        ok += 1
                    else:
                        failed += 1
    except OSError:
        failed = messages - ok
    return ok, failed


def fetch_stats(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return dict(json.loads(data.split(b"\r\n\r\n", 1)[1]))


def build_loadgen(out: Path) -> Path:
    binary = out / "loadgen"
    source = BENCH / "loadgen" / "loadgen.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise SystemExit("the idle phase needs a C compiler to build bench/loadgen")
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([cc, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


class Soak:
    """One soak run against one server process."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.figures: dict[str, Any] = {}
        self.failures: list[str] = []
        # The interpreter must have pymongoose installed (e.g. a venv's python).
        self.server = subprocess.Popen([args.python, "-c", SERVER], stdout=subprocess.PIPE,
                                       text=True)
        assert self.server.stdout is not None
        line = self.server.stdout.readline()
        if not line.strip().isdigit():
            self.server.kill()
            raise SystemExit(f"the server did not start (printed {line!r})")
        self.port = int(line)
        version = subprocess.run(
            [args.python, "-c", "import platform, sys; print(platform.python_implementation(),"
             " platform.python_version())"], capture_output=True, text=True, check=True)
        self.figures["server_python"] = version.stdout.strip()

    def rss(self) -> int:
        return vmrss_kb(self.server.pid)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)
            log(f"FAILED: {what}")

    def http_phase(self, pool: Any) -> None:
        a = self.args
        marks = [(10, a.requests // 10), (50, a.requests // 2), (100, a.requests)]
        done = ok = failed = 0
        rss: dict[str, int] = {"start": self.rss()}
        start = time.monotonic()
        for percent, upto in marks:
            count = upto - done
            shares = [count // a.workers + (1 if i < count % a.workers else 0)
                      for i in range(a.workers)]
            results = pool.starmap(http_worker,
                                   [(self.port, s, a.per_connection) for s in shares if s])
            ok += sum(r[0] for r in results)
            failed += sum(r[1] for r in results)
            done = upto
            rss[f"{percent}%"] = self.rss()
            log(f"http {percent:3d}%: {done:,} requests, {failed} failed, "
                f"server VmRSS {rss[f'{percent}%']:,} KiB")
        seconds = time.monotonic() - start
        growth = (rss["100%"] - rss["10%"]) / rss["10%"]
        self.figures["http"] = {
            "requests": done, "ok": ok, "failed": failed,
            "connections": -(-done // a.per_connection), "seconds": round(seconds, 1),
            "requests_per_second": round(done / seconds), "vmrss_kb": rss,
            "growth_after_warmup": round(growth, 4),
        }
        self.check(failed == 0, f"{failed} HTTP requests failed")
        self.check(growth < a.max_growth,
                   f"VmRSS grew {growth:.1%} from 10% to 100% (limit {a.max_growth:.0%})")

    def ws_phase(self, pool: Any) -> None:
        a = self.args
        before = self.rss()
        start = time.monotonic()
        shares = [a.ws_messages // a.ws_connections + (1 if i < a.ws_messages % a.ws_connections
                                                       else 0) for i in range(a.ws_connections)]
        results = pool.starmap(ws_worker, [(self.port, s, 50) for s in shares if s])
        seconds = time.monotonic() - start
        ok, failed = sum(r[0] for r in results), sum(r[1] for r in results)
        self.figures["ws"] = {"messages": a.ws_messages, "ok": ok, "failed": failed,
                              "connections": a.ws_connections, "seconds": round(seconds, 1),
                              "vmrss_kb": {"before": before, "after": self.rss()}}
        log(f"ws: {ok:,} echoed, {failed} failed in {seconds:.1f} s")
        self.check(failed == 0 and ok == a.ws_messages, f"{failed} WebSocket messages failed")

    def wait_connections(self, at_most: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        count = fetch_stats(self.port)["connections"]
        while count > at_most and time.monotonic() < deadline:
            time.sleep(0.2)  # a script watching a server, not a test: nothing to await
            count = fetch_stats(self.port)["connections"]
        return int(count)

    def idle_phase(self) -> None:
        a = self.args
        loadgen = build_loadgen(REPO / "bench" / "out")
        # Listener and the /stats request itself.
        base = self.wait_connections(2)
        # Let the once-a-second sweep free what the earlier phases left behind.
        time.sleep(2.5)
        before = self.rss()
        proc = subprocess.Popen([str(loadgen), "idle", "--port", str(self.port), "--path",
                                 "/hello", "--connections", str(a.idle), "--timeout", "120"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        try:
            ready = json.loads(line)
        except ValueError:
            proc.kill()
            raise SystemExit(f"loadgen idle failed: {line!r}") from None
        time.sleep(2.5)  # two idle sweeps: buffers of idle connections freed
        held = self.rss()
        held_conns = fetch_stats(self.port)["connections"]
        proc.stdin.close()
        proc.wait(timeout=120)
        remaining = self.wait_connections(base)
        time.sleep(2.5)
        after = self.rss()
        self.figures["idle"] = {
            "connections": a.idle, "ready": ready["ready"], "errors": ready["errors"],
            "server_connections_while_held": held_conns - base,
            "left_open_after_close": remaining - base,
            "vmrss_kb": {"before": before, "with": held, "after": after},
            "kb_per_connection": round((held - before) / max(1, ready["ready"]), 2),
        }
        log(f"idle: {ready['ready']:,} held; VmRSS before {before:,}, with {held:,}, "
            f"after {after:,} KiB")
        self.check(ready["errors"] == 0 and ready["ready"] == a.idle,
                   f"{ready['errors']} idle connections failed")
        self.check(remaining <= base, f"{remaining - base} connections still open after closing")
        # Memory returns: what the held connections added is (nearly) all given back.
        # Python's side keeps a little (its dict of connections never shrinks).
        added = max(1, held - before)
        self.check(after - before <= max(0.1 * added, 2048),
                   f"VmRSS after closing is {after - before:,} KiB above before "
                   f"(the connections added {added:,} KiB)")

    def close(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()


def report(figures: dict[str, Any], failures: list[str]) -> str:
    h, w, i = figures["http"], figures["ws"], figures["idle"]
    r = h["vmrss_kb"]
    lines = [
        f"Server: {figures['server_python']}; client: {figures['client']}.",
        "",
        "| phase | load | result | server VmRSS (KiB) |",
        "| --- | --- | --- | --- |",
        f"| HTTP, new connection every {figures['per_connection']} requests | "
        f"{h['requests']:,} requests, {h['connections']:,} connections, {h['seconds']} s "
        f"({h['requests_per_second']:,} req/s) | {h['failed']} failed | "
        f"start {r['start']:,}; 10% {r['10%']:,}; 50% {r['50%']:,}; 100% {r['100%']:,} "
        f"(growth after warm-up {h['growth_after_warmup']:+.2%}) |",
        f"| WebSocket echo | {w['messages']:,} messages over {w['connections']} "
        f"connections, {w['seconds']} s | {w['failed']} failed | "
        f"before {w['vmrss_kb']['before']:,}; after {w['vmrss_kb']['after']:,} |",
        f"| idle keep-alive connections | {i['connections']:,} opened, held, closed | "
        f"{i['errors']} failed; {i['server_connections_while_held']:,} held by the server, "
        f"{i['left_open_after_close']} left after closing | "
        f"before {i['vmrss_kb']['before']:,}; with {i['vmrss_kb']['with']:,} "
        f"({i['kb_per_connection']} KiB/conn); after {i['vmrss_kb']['after']:,} |",
        "",
        "Checks: " + ("all passed." if not failures else "FAILED: " + "; ".join(failures)),
    ]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that runs the server (default: this one)")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--per-connection", type=int, default=10)
    parser.add_argument("--ws-messages", type=int, default=100_000)
    parser.add_argument("--ws-connections", type=int, default=10)
    parser.add_argument("--idle", type=int, default=None, help="default 10,000")
    parser.add_argument("--workers", type=int, default=2, help="HTTP client processes")
    parser.add_argument("--max-growth", type=float, default=0.05)
    parser.add_argument("--quick", action="store_true",
                        help="20,000 requests, 2,000 messages, 500 idle connections "
                        "(--idle still applies when given)")
    parser.add_argument("--out", type=Path, help="also write the report (and .json) here")
    args = parser.parse_args(argv)
    if args.idle is None and not args.quick:
        args.idle = 10_000
    if args.quick:
        args.requests, args.ws_messages = 20_000, 2_000
        args.idle = 500 if args.idle is None else args.idle
        # A short run has no steady state to speak of: allocator warm-up dominates.
        args.max_growth = max(args.max_growth, 0.25)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.idle + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is below --idle {args.idle} + 100")
    soak = Soak(args)
    soak.figures["client"] = (f"{args.workers} {platform.python_implementation()} processes "
                              "(HTTP, WebSocket), bench/loadgen (idle)")
    soak.figures["per_connection"] = args.per_connection
    try:
        with multiprocessing.get_context("spawn").Pool(max(args.workers,
                                                           args.ws_connections)) as pool:
            soak.http_phase(pool)
            soak.ws_phase(pool)
        soak.idle_phase()
    finally:
        soak.close()
    text = report(soak.figures, soak.failures)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(
            json.dumps({"figures": soak.figures, "failures": soak.failures}, indent=2) + "\n")
    return 1 if soak.failures else 0


if __name__ == "__main__":
    sys.exit(main())
