"""pymongoose benchmark suite: one command, every workload, medians of alternating rounds.

    python3 bench/run.py            # full run: ~10 minutes on a 2-core machine
    python3 bench/run.py --quick    # ~1 s per workload: checks the harness, not the speed

It builds the C baseline server from the same mongoose.c and flags as the binding,
creates its own venvs (CPython with cymongoose 0.2.5, matplotlib and pymongoose; PyPy
with pymongoose), then for each workload starts every contender's server pinned to
CPU 0, warms it up, and measures them in alternating order for N rounds with the load
generator pinned to CPU 1 (`wrk` for HTTP; bench/loadgen for WebSocket echo and idle
connections). Ratios are taken per round against the C server and cymongoose measured
in the same round, and the median of those is reported. Results go to
bench/out/results.{md,json} and bench/out/chart.png.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SERVER_CORE, LOAD_CORE = "0", "1"
HTTP_CONNECTIONS = 50
IDLE_FD_LIMIT = 65536
IDLE_SETTLE_SECONDS = 3.0


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the result table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- contenders and workloads ----------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One server under test: a label and the command that starts it for a mode."""

    label: str
    kind: str  # "c", "pymongoose", "cymongoose"
    python: Optional[str] = None  # interpreter for Python servers
    fast: bool = False  # use pymongoose's declared event interest
    warmup_factor: float = 1.0  # PyPy needs its JIT warm

    def command(self, mode: str, paths: Paths) -> list[str]:
        if self.kind == "c":
            return [str(paths.c_server), mode, str(paths.www)]
        assert self.python is not None
        py_mode = f"{mode}-fast" if self.fast else mode
        return [self.python, str(BENCH / "servers" / "py_server.py"), self.kind, py_mode,
                str(paths.www)]


@dataclass(frozen=True)
class Workload:
    """What the load generator does, and which contenders it compares."""

    name: str
    title: str
    mode: str
    unit: str
    contenders: tuple[str, ...]
    targets: dict[str, str] = field(default_factory=dict)


# Rows measured only when --baseline / --baseline-pypy name an older pymongoose.
BEFORE = ("pymongoose before", "pymongoose fast before", "pymongoose fast PyPy before")

WORKLOADS = [
    Workload("hello", "HTTP hello (JSON, 50 keep-alive conns)", "hello", "req/s",
             ("C server", "cymongoose", "pymongoose", "pymongoose fast", "pymongoose fast PyPy",
              *BEFORE),
             {"pymongoose": ">= 1.15x cym", "pymongoose fast": ">= 1.25x cym, >= 0.85x C",
              "pymongoose fast PyPy": ">= 0.9x C"}),
    Workload("ws", "WebSocket echo, 64 B binary, 50 conns x 16 in flight", "ws", "msg/s",
             ("C server", "cymongoose", "pymongoose", "pymongoose fast", "pymongoose fast PyPy",
              *BEFORE),
             {"pymongoose": ">= 1.0x cym", "pymongoose fast": ">= 1.1x cym"}),
    Workload("static", "static 1 MB file via serve_dir", "static", "req/s",
             ("C server", "cymongoose", "pymongoose fast"),
             {"pymongoose fast": ">= 0.95x C"}),
    Workload("post", "10 KB POST echo", "post", "req/s",
             ("C server", "cymongoose", "pymongoose fast"),
             {"pymongoose fast": ">= 1.2x cym"}),
    Workload("idle", "resident memory per idle keep-alive connection", "hello", "KB/conn",
             ("C server", "cymongoose", "pymongoose fast", "pymongoose fast before"),
             {"pymongoose fast": "<= 4 KB"}),
]


@dataclass
class Paths:
    """Where the harness keeps what it builds."""

    out: Path
    c_server: Path
    loadgen: Path
    www: Path
    post_lua: Path


@dataclass
class Settings:
    """How long and how often to measure."""

    rounds: int
    duration: float
    warmup: float
    idle_connections: int
    callgrind_requests: int
    callgrind_seconds: float


# -- building ---------------------------------------------------------------------------


def run(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a set-up command; on failure show its output and stop."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"bench: command failed ({proc.returncode}): {' '.join(cmd)}")
    return proc  # type: ignore[no-any-return]


def mongoose_dir() -> Path:
    """The folder holding mongoose.c/.h, resolved exactly as the binding's build does."""
    sys.path.insert(0, str(REPO))
    try:
        import build_ffi
    finally:
        sys.path.pop(0)
    return Path(build_ffi.mongoose_source_dir())


def build_native(out: Path, need_loadgen: bool) -> tuple[Path, Path]:
    """Compile the C baseline server (same mongoose.c, same flags) and the load generator."""
    sys.path.insert(0, str(REPO))
    try:
        import build_ffi
    finally:
        sys.path.pop(0)
    src = mongoose_dir()
    cc = os.environ.get("CC", "cc")
    defines = [f"-D{name}={value}" for name, value in build_ffi.DEFINES]
    c_server = out / "c_server"
    log("building the C baseline server")
    run([cc, *build_ffi.COMPILE_ARGS, *defines, f"-I{src}", "-o", str(c_server),
         str(BENCH / "servers" / "c_server.c"), str(standalone_mongoose_c(src, out))])
    loadgen = out / "loadgen"
    if need_loadgen:
        log("building the load generator")
        run([cc, "-O2", "-o", str(loadgen), str(BENCH / "loadgen" / "loadgen.c")])
    return c_server, loadgen


def standalone_mongoose_c(src: Path, out: Path) -> Path:
    """mongoose.c with the binding's build-time fixes that need none of its C (the
    mg_bzero speed-up among them), so the C server runs the same Mongoose code."""
    import build_ffi
    text = (src / "mongoose.c").read_text(encoding="utf-8", errors="surrogateescape")
    for _what, old, new in build_ffi.MONGOOSE_FIXES:
        if "pymg_" not in new and text.count(old) == 1:
            text = text.replace(old, new)
    target = out / "mongoose-standalone.c"
    target.write_text(text, encoding="utf-8", errors="surrogateescape")
    return target


def make_venv(python: str, where: Path, packages: Sequence[str]) -> str:
    """A venv at ``where`` with ``packages`` and this checkout of pymongoose installed."""
    venv_python = where / "bin" / "python"
    if not venv_python.exists():
        log(f"creating {where.name} with {python}")
        run([python, "-m", "venv", str(where)])
    log(f"installing pymongoose{' + ' + ', '.join(packages) if packages else ''} into {where.name}")
    run([str(venv_python), "-m", "pip", "install", "-q", *packages, str(REPO)])
    return str(venv_python)


def make_fixtures(out: Path) -> tuple[Path, Path]:
    """The 1 MB static file and the wrk script for the 10 KB POST."""
    www = out / "www"
    www.mkdir(parents=True, exist_ok=True)
    blob = www / "file.bin"
    if not blob.exists() or blob.stat().st_size != 1 << 20:
        blob.write_bytes(os.urandom(1 << 20))
    (www / "index.html").write_text("<h1>bench</h1>\n")
    post_lua = out / "post.lua"
    post_lua.write_text(
        'wrk.method = "POST"\n'
        'wrk.body = string.rep("x", 10240)\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )
    return www, post_lua


# -- running servers --------------------------------------------------------------------


def pinned(core: str, cmd: list[str]) -> list[str]:
    """Pin ``cmd`` to one CPU when the machine has more than one."""
    if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        return ["taskset", "-c", core, *cmd]
    return cmd


def raise_fd_limit() -> None:
    """In a child before exec: allow the idle-connection workload's file descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = IDLE_FD_LIMIT if hard == resource.RLIM_INFINITY else min(IDLE_FD_LIMIT, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))


@dataclass
class Server:
    """A started server process and the port it reported."""

    proc: subprocess.Popen[str]
    port: int


def read_port(proc: subprocess.Popen[str], timeout: float, what: str) -> int:
    """Wait for the ``PORT <n>`` line a bench server prints once it listens."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if not line:
                    break
                match = re.match(r"PORT (\d+)", line)
                if match:
                    return int(match.group(1))
    proc.kill()
    raise SystemExit(f"bench: {what} did not report its port within {timeout:.0f} s")


@contextlib.contextmanager
def started(cmd: list[str], what: str, *, wrap: Sequence[str] = (),
            timeout: float = 30.0) -> Iterator[Server]:
    """Start a server pinned to the server CPU; stop it with SIGTERM on exit."""
    proc = subprocess.Popen(pinned(SERVER_CORE, [*wrap, *cmd]), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, preexec_fn=raise_fd_limit)
    try:
        server = Server(proc, read_port(proc, timeout, what))
        # Keep reading what it prints (Mongoose logs every socket error the load's
        # disconnects cause): a full pipe would stop the server in write().
        assert proc.stdout is not None
        threading.Thread(target=collections.deque, args=(proc.stdout, 0), daemon=True).start()
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in KB (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def server_pid(server: Server) -> int:
    """The server's own pid (taskset execs it, so the Popen pid is the server)."""
    return server.proc.pid


# -- load generators --------------------------------------------------------------------


def wrk_run(port: int, workload: Workload, seconds: float,
            paths: Optional[Paths]) -> tuple[float, int]:
    """(requests per second, requests) from one wrk run against ``port``. ``paths`` is
    needed only by the POST workload (its Lua script)."""
    url = f"http://127.0.0.1:{port}/"
    if workload.name == "static":
        url += "file.bin"
    cmd = ["wrk", "-t1", f"-c{HTTP_CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    if workload.name == "post":
        assert paths is not None, "the POST workload needs the paths of its Lua script"
        cmd += ["-s", str(paths.post_lua)]
    proc = run(pinned(LOAD_CORE, [*cmd, url]))
    match = re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout)
    count = re.search(r"(\d+) requests in", proc.stdout)
    if not match or not count:
        raise SystemExit(f"bench: cannot read wrk's output:\n{proc.stdout}")
    errors = re.search(r"Socket errors: (.*)|Non-2xx or 3xx responses: (\d+)", proc.stdout)
    if errors:
        log(f"  wrk reported errors: {errors.group(0)}")
    return float(match.group(1)), int(count.group(1))


def ws_run(port: int, seconds: float, warmup: float, paths: Paths,
           timeout: float = 10) -> dict[str, float]:
    """One run of bench/loadgen's WebSocket mode: its result line, parsed."""
    cmd = [str(paths.loadgen), "ws", "--port", str(port), "--path", "/ws",
           "--connections", str(HTTP_CONNECTIONS), "--inflight", "16", "--size", "64",
           "--duration", f"{seconds:g}", "--warmup", f"{warmup:g}", "--timeout", f"{timeout:g}"]
    proc = run(pinned(LOAD_CORE, cmd))
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.get("errors"):
        log(f"  loadgen reported {result['errors']} errors")
    return result


def measure(workload: Workload, server: Server, seconds: float, warmup: float,
            paths: Optional[Paths]) -> tuple[float, float]:
    """One measurement of ``workload`` against a running server: (operations per second,
    operations per second of CPU time the server's processes got). The second holds
    still on a shared machine, where the first swings with what the neighbours run.
    ``paths`` may be None for the HTTP hello workload."""
    def load(duration: float) -> tuple[float, int]:
        if workload.name == "ws":
            assert paths is not None, "the WebSocket workload needs the load generator"
            result = ws_run(server.port, duration, 0, paths)
            return float(result["msgs_per_sec"]), int(result["messages"])
        return wrk_run(server.port, workload, duration, paths)

    if warmup > 0:
        load(warmup)
    before = tree_cpu_seconds(server.proc.pid)
    rate, count = load(seconds)
    cpu = tree_cpu_seconds(server.proc.pid) - before
    return rate, count / max(cpu, 1e-9)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its live descendants (workers, wrappers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    wanted = {pid}
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in wanted and child not in wanted:
                wanted.add(child)
                changed = True
    return sum(stats.get(p, (0, 0.0))[1] for p in wanted)


def measure_with_cpu(server: Server, seconds: float, warmup: float) -> tuple[float, float]:
    """(requests per second, requests per server CPU-second) from one wrk run on ``/``:
    :func:`measure` with the HTTP hello workload (the WSGI and ASGI benches' apps)."""
    hello = next(w for w in WORKLOADS if w.name == "hello")
    return measure(hello, server, seconds, warmup, None)


def idle_kb_per_connection(server: Server, connections: int, paths: Paths) -> float:
    """Server RSS growth per idle keep-alive connection, once the server has settled."""
    pid = server_pid(server)
    # One request first, so that lazily created state is not counted per connection.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(4096)
    time.sleep(IDLE_SETTLE_SECONDS)  # the same settling as below, so both reads compare
    before = rss_kb(pid)
    gen = subprocess.Popen(
        pinned(LOAD_CORE, [str(paths.loadgen), "idle", "--port", str(server.port),
                           "--connections", str(connections)]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=raise_fd_limit)
    try:
        assert gen.stdout is not None
        line = gen.stdout.readline()
        if not line:
            raise SystemExit("bench: the idle-connection generator exited early")
        ready = int(json.loads(line)["ready"])
        # Give every server the same 3 s to reach its idle steady state (pymongoose frees
        # idle buffers after one to two seconds), then read RSS.
        time.sleep(IDLE_SETTLE_SECONDS)
        after = rss_kb(pid)
    finally:
        if gen.stdin:
            gen.stdin.close()
        gen.wait(timeout=60)
    if ready < connections:
        log(f"  only {ready} of {connections} idle connections were established")
    return (after - before) / max(1, ready)


# -- callgrind --------------------------------------------------------------------------


def http_requests(port: int, count: int) -> None:
    """``count`` sequential keep-alive GETs on one connection, each read to its end."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        buf = b""
        for _ in range(count):
            sock.sendall(request)
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    found = re.search(rb"(?i)content-length:\s*(\d+)", buf[:head_end])
                    if found is None:
                        raise ConnectionError("response without Content-Length")
                    length = int(found.group(1))
                    end = head_end + 4 + length
                    if len(buf) >= end:
                        buf = buf[end:]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk


def callgrind_instructions(contender: Contender, paths: Paths, requests: int) -> Optional[float]:
    """Instructions per HTTP hello request under callgrind (warm, one keep-alive client)."""

    def drive(server: Server) -> float:
        http_requests(server.port, 200)  # warm up
        run(["callgrind_control", "-i", "on", str(server.proc.pid)])
        http_requests(server.port, requests)
        run(["callgrind_control", "-i", "off", str(server.proc.pid)])
        return float(requests)

    return _under_callgrind(contender, "hello", paths, drive)


def callgrind_ws_instructions(contender: Contender, paths: Paths,
                              seconds: float) -> Optional[float]:
    """Instructions per echoed WebSocket message under callgrind, with the throughput
    workload's load (50 connections x 16 in flight, 64 B), once warm.

    The count covers everything the server does meanwhile (handshakes of the 50
    connections and the few hundred messages still in flight at the end included: well
    under 1% at the message counts callgrind reaches in a few seconds).
    """

    def drive(server: Server) -> float:
        ws_run(server.port, 1.0, 0.0, paths, timeout=60)  # warm up
        run(["callgrind_control", "-i", "on", str(server.proc.pid)])
        ws_run(server.port, seconds, 0.0, paths, timeout=60)
        run(["callgrind_control", "-i", "off", str(server.proc.pid)])
        return 0.0  # counted from the profile: loadgen does not count echoes during set-up

    return _under_callgrind(contender, "ws", paths, drive, per_call_of="mg_ws_send")


def _under_callgrind(contender: Contender, mode: str, paths: Paths,
                     drive: Callable[[Server], float],
                     per_call_of: Optional[str] = None) -> Optional[float]:
    """Start ``contender``'s ``mode`` server under callgrind, let ``drive(server)`` load it
    (it switches instrumentation on and off and returns how many units it measured), and
    return instructions per unit. With ``per_call_of``, the units are the calls of that
    C function the profile recorded instead."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        log("  valgrind not installed: skipping instruction counts")
        return None
    out_file = paths.out / f"callgrind.{mode}.{contender.label.replace(' ', '_')}.out"
    for stale in paths.out.glob(out_file.name + "*"):
        stale.unlink()
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out_file}"]
    with started(contender.command(mode, paths), contender.label, wrap=wrap,
                 timeout=300) as server:
        units = drive(server)
    totals = 0
    calls = 0
    for dump in paths.out.glob(out_file.name + "*"):
        text = dump.read_text(errors="replace")
        counts = [int(n) for n in re.findall(r"^(?:summary|totals):\s+(\d+)", text, re.M)]
        totals += max(counts, default=0)
        if per_call_of is not None:
            calls += calls_recorded(text, per_call_of)
    if per_call_of is not None:
        units = float(calls)
    return totals / units if totals and units else None


def calls_recorded(profile: str, function: str) -> int:
    """How many calls of ``function`` a callgrind profile recorded (from every caller)."""
    names: dict[str, str] = {}
    total = 0
    target = False
    for line in profile.splitlines():
        if line.startswith("cfn="):
            found = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
            if found is None:
                target = line[4:] == function
                continue
            key, name = found.group(1), found.group(2)
            if name is not None:
                names[key] = name
            target = names.get(key) == function
        elif line.startswith("calls=") and target:
            total += int(line[6:].split()[0])
            target = False
        elif line.startswith(("fn=", "fl=", "fi=", "fe=")):
            found = re.match(r"fn=\((\d+)\) (.*)", line)
            if found is not None:
                names[found.group(1)] = found.group(2)
    return total


# -- the run ----------------------------------------------------------------------------


@dataclass
class Result:
    """Per-round values of one contender in one workload."""

    values: list[float] = field(default_factory=list)
    vs_c: list[float] = field(default_factory=list)
    vs_cym: list[float] = field(default_factory=list)
    per_cpu: list[float] = field(default_factory=list)  # operations per server CPU-second
    per_cpu_vs_cym: list[float] = field(default_factory=list)


def run_workload(workload: Workload, contenders: list[Contender], paths: Paths,
                 settings: Settings) -> dict[str, Result]:
    """Measure every contender of ``workload`` in alternating order, round after round."""
    results = {c.label: Result() for c in contenders}
    with contextlib.ExitStack() as stack:
        servers = {}
        for contender in contenders:
            servers[contender.label] = stack.enter_context(
                started(contender.command(workload.mode, paths), contender.label))
        for rnd in range(settings.rounds):
            order = contenders if rnd % 2 == 0 else contenders[::-1]
            values: dict[str, float] = {}
            per_cpu: dict[str, float] = {}
            for contender in order:
                server = servers[contender.label]
                if workload.name == "idle":
                    if rnd > 0:
                        continue
                    value = idle_kb_per_connection(server, settings.idle_connections, paths)
                    cpu_note = ""
                else:
                    first = rnd == 0
                    warm = settings.warmup * (contender.warmup_factor if first else 0.25)
                    value, per_cpu[contender.label] = measure(
                        workload, server, settings.duration, warm, paths)
                    cpu_note = f"  ({per_cpu[contender.label]:,.0f} per CPU-s)"
                values[contender.label] = value
                log(f"  {workload.name} round {rnd + 1}/{settings.rounds}: "
                    f"{contender.label:22s} {value:12,.1f} {workload.unit}{cpu_note}")
            for label, value in values.items():
                res = results[label]
                res.values.append(value)
                if values.get("C server"):
                    res.vs_c.append(value / values["C server"])
                if values.get("cymongoose"):
                    res.vs_cym.append(value / values["cymongoose"])
                if label in per_cpu:
                    res.per_cpu.append(per_cpu[label])
                    if per_cpu.get("cymongoose"):
                        res.per_cpu_vs_cym.append(per_cpu[label] / per_cpu["cymongoose"])
    return results


def median(values: list[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def fmt_ratio(value: Optional[float]) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def fmt_value(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if unit == "KB/conn" else f"{value:,.0f}"


def table(report: dict[str, dict[str, dict[str, Optional[float]]]],
          workloads: list[Workload], instructions: dict[str, dict[str, Optional[float]]],
          header: str) -> str:
    """The markdown results table."""
    lines = [header, "",
             "| workload | server | median | vs C server | vs cymongoose | per server CPU-s "
             "| vs cymongoose, per CPU-s | target |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for workload in workloads:
        for label, row in report.get(workload.name, {}).items():
            per_cpu = row.get("per_cpu")
            lines.append(
                f"| {workload.title} | {label} | {fmt_value(row['value'], workload.unit)} "
                f"{workload.unit} | {fmt_ratio(row['vs_c'])} | {fmt_ratio(row['vs_cym'])} | "
                f"{fmt_value(per_cpu, workload.unit) if per_cpu else '-'} | "
                f"{fmt_ratio(row.get('per_cpu_vs_cym'))} | "
                f"{workload.targets.get(label, '')} |")
    for kind, counts in instructions.items():
        if not counts:
            continue
        lines += ["", f"| callgrind: instructions per {CALLGRIND_TITLES[kind]} | instructions |",
                  "| --- | ---: |"]
        for label, count in counts.items():
            lines.append(f"| {label} | {count:,.0f} |" if count else f"| {label} | - |")
    return "\n".join(lines) + "\n"


CALLGRIND_TITLES = {
    "hello": "HTTP hello request (1 keep-alive client)",
    "ws": "WebSocket echo message (64 B, 50 conns x 16 in flight)",
}


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="about a second per workload, one round: checks the harness works")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 5)")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 4)")
    parser.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS),
                        help="comma-separated subset of: " + ", ".join(w.name for w in WORKLOADS))
    parser.add_argument("--idle-connections", type=int,
                        help="connections held open by the idle workload (default 10000)")
    parser.add_argument("--cpython", metavar="PYTHON",
                        help="use this interpreter (with pymongoose, and cymongoose if wanted, "
                             "installed) instead of creating bench/out/venv-cpython")
    parser.add_argument("--pypy", metavar="PYTHON",
                        help="use this PyPy instead of creating bench/out/venv-pypy; "
                             "'none' skips PyPy")
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also measure the pymongoose installed for this interpreter "
                             "(rows 'pymongoose before', 'pymongoose fast before')")
    parser.add_argument("--baseline-pypy", metavar="PYTHON",
                        help="also measure the pymongoose installed for this PyPy "
                             "(row 'pymongoose fast PyPy before')")
    parser.add_argument("--callgrind-only", action="store_true",
                        help="only the instruction counts, no throughput rounds")
    parser.add_argument("--callgrind-seconds", type=float,
                        help="seconds of WebSocket load under callgrind (default 5)")
    parser.add_argument("--no-cymongoose", action="store_true", help="leave cymongoose out")
    parser.add_argument("--no-callgrind", action="store_true", help="skip instruction counts")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="output folder")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    settings = Settings(rounds=args.rounds or (1 if args.quick else 5),
                        duration=args.duration or (1.0 if args.quick else 4.0),
                        warmup=0.0 if args.quick else 2.0,
                        idle_connections=args.idle_connections or (300 if args.quick else 10_000),
                        callgrind_requests=300 if args.quick else 3000,
                        callgrind_seconds=args.callgrind_seconds or (1.0 if args.quick else 5.0))
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(wanted) - {w.name for w in WORKLOADS})
    if unknown:
        raise SystemExit(f"bench: unknown workload(s) {', '.join(unknown)}")
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is not installed (Debian: apt-get install wrk)")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    c_server, loadgen = build_native(out, bool({"ws", "idle"} & set(wanted)))
    www, post_lua = make_fixtures(out)
    paths = Paths(out, c_server, loadgen, www, post_lua)

    use_cym = not args.no_cymongoose
    if args.cpython:
        cpython = args.cpython
    else:
        extra = ["cymongoose==0.2.5"] if use_cym else []
        extra += [] if args.no_chart else ["matplotlib"]
        cpython = make_venv(sys.executable, out / "venv-cpython", extra)
    pypy: Optional[str] = None
    if args.pypy and args.pypy != "none":
        pypy = args.pypy
    elif not args.pypy and shutil.which("pypy3"):
        pypy = make_venv(shutil.which("pypy3") or "pypy3", out / "venv-pypy", [])
    elif not args.pypy:
        log("pypy3 not found: PyPy rows are skipped (Debian: apt-get install pypy3 pypy3-venv)")

    available = {
        "C server": Contender("C server", "c"),
        "cymongoose": Contender("cymongoose", "cymongoose", cpython) if use_cym else None,
        "pymongoose": Contender("pymongoose", "pymongoose", cpython),
        "pymongoose fast": Contender("pymongoose fast", "pymongoose", cpython, fast=True),
        "pymongoose fast PyPy": (Contender("pymongoose fast PyPy", "pymongoose", pypy, fast=True,
                                           warmup_factor=3.0) if pypy else None),
    }
    if args.baseline:
        available["pymongoose before"] = Contender("pymongoose before", "pymongoose",
                                                   args.baseline)
        available["pymongoose fast before"] = Contender("pymongoose fast before", "pymongoose",
                                                        args.baseline, fast=True)
    if args.baseline_pypy:
        available["pymongoose fast PyPy before"] = Contender(
            "pymongoose fast PyPy before", "pymongoose", args.baseline_pypy, fast=True,
            warmup_factor=3.0)
    workloads = [w for w in WORKLOADS if w.name in wanted]
    report: dict[str, dict[str, dict[str, Optional[float]]]] = {}
    for workload in [] if args.callgrind_only else workloads:
        contenders = [c for label in workload.contenders if (c := available.get(label))]
        log(f"{workload.name}: {workload.title} ({len(contenders)} servers, "
            f"{settings.rounds} rounds)")
        results = run_workload(workload, contenders, paths, settings)
        report[workload.name] = {
            label: {"value": median(r.values),
                    "vs_c": median(r.vs_c) if label != "C server" else None,
                    "vs_cym": median(r.vs_cym) if label != "cymongoose" else None,
                    "per_cpu": median(r.per_cpu),
                    "per_cpu_vs_cym": (median(r.per_cpu_vs_cym) if label != "cymongoose"
                                       else None),
                    "rounds": r.values}  # type: ignore[dict-item]
            for label, r in results.items()
        }

    instructions: dict[str, dict[str, Optional[float]]] = {}
    if not args.no_callgrind:
        labels = ("C server", "cymongoose", "pymongoose", "pymongoose fast", "pymongoose before",
                  "pymongoose fast before")
        for kind in ("hello", "ws"):
            if kind not in wanted:
                continue
            counts = instructions[kind] = {}
            for label in labels:
                contender = available.get(label)
                if contender is None:
                    continue
                log(f"callgrind {kind}: {label}")
                if kind == "hello":
                    counts[label] = callgrind_instructions(contender, paths,
                                                           settings.callgrind_requests)
                else:
                    counts[label] = callgrind_ws_instructions(contender, paths,
                                                              settings.callgrind_seconds)

    header = (f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs "
              f"({platform_line()}); {settings.rounds} alternating rounds of "
              f"{settings.duration:g} s, medians of per-round ratios.")
    text = table(report, workloads, instructions, header)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(
        {"settings": settings.__dict__, "results": report, "instructions": instructions,
         "titles": {w.name: w.title for w in workloads},
         "units": {w.name: w.unit for w in workloads}}, indent=2))
    print(text)
    if not args.no_chart:
        run([cpython, str(BENCH / "chart.py"), str(out / "results.json"), str(out / "chart.png")])
        log(f"chart written to {out / 'chart.png'}")
    return 0


def platform_line() -> str:
    """CPU model and kernel, for the table's header."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model or 'unknown CPU'}, Linux {os.uname().release}"


if __name__ == "__main__":
    sys.exit(main())
