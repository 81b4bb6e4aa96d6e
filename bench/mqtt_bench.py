"""MQTT broker benchmark: MqttBroker on CPython and PyPy against mosquitto, same run.

    python3 bench/mqtt_bench.py [--rounds 3] [--duration 4] [--quick]

Builds bench/loadgen/mqttgen.c, starts each broker pinned to CPU 0 (mosquitto with a
generated config, MqttBroker via bench/servers/mqtt_broker_server.py under
.venv/bin/python and .venv-pypy/bin/python when present), and runs mqttgen pinned to
CPU 1 for each workload: N publishers, M subscribers on "bench/#", QoS 0 and 1, 64-byte
payloads. Brokers are measured in alternating order for ``--rounds`` rounds; the table
gives the median deliveries/s and the median p99 latency, and each MqttBroker's ratio
to mosquitto is the median of per-round ratios. Writes bench/results/mqtt.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SERVER_CORE, LOAD_CORE = "0", "1"

#: name -> (publishers, subscribers, qos, window per publisher)
WORKLOADS = {
    "fan-out QoS 0 (1 pub -> 50 subs)": (1, 50, 0, 64),
    "fan-out QoS 1 (1 pub -> 50 subs)": (1, 50, 1, 64),
    "many-to-many QoS 0 (8 pubs, 8 subs)": (8, 8, 0, 16),
    "many-to-many QoS 1 (8 pubs, 8 subs)": (8, 8, 1, 16),
}


def log(message: str) -> None:
    print(f"[mqtt-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pinned(core: str, argv: list[str]) -> list[str]:
    return (["taskset", "-c", core] if shutil.which("taskset") else []) + argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_mqttgen(out_dir: Path) -> Path:
    exe = out_dir / "mqttgen"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(BENCH / "loadgen" / "mqttgen.c")],
                   check=True)
    return exe


class Broker:
    """One broker process under test."""

    def __init__(self, label: str, argv: Optional[list[str]], conf_dir: Path) -> None:
        self.label = label
        self.proc: Optional[subprocess.Popen[str]] = None
        self.port = 0
        if argv is None:  # mosquitto
            self.port = free_port()
            conf = conf_dir / f"mosquitto-{self.port}.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                            "persistence false\nlog_type none\n"
                            + ("user root\n" if os.geteuid() == 0 else ""))
            self.proc = subprocess.Popen(pinned(SERVER_CORE, ["mosquitto", "-c", str(conf)]),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         text=True)
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError("mosquitto did not start") from None
                    time.sleep(0.05)
        else:
            self.proc = subprocess.Popen(pinned(SERVER_CORE, argv), stdout=subprocess.PIPE,
                                         text=True, cwd=REPO)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if not line.startswith("PORT "):
                raise RuntimeError(f"{label}: no PORT line, got {line!r}")
            self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def run_load(exe: Path, port: int, pubs: int, subs: int, qos: int, window: int,
             duration: float, warmup: float) -> dict[str, float]:
    out = subprocess.run(
        pinned(LOAD_CORE, [str(exe), "--port", str(port), "--publishers", str(pubs),
                           "--subscribers", str(subs), "--qos", str(qos), "--size", "64",
                           "--window", str(window), "--duration", str(duration),
                           "--warmup", str(warmup)]),
        check=True, capture_output=True, text=True, timeout=duration + warmup + 60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke test")
    parser.add_argument("--out", default=str(BENCH / "results" / "mqtt.md"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.5
    contenders: list[tuple[str, Optional[list[str]]]] = [("mosquitto", None)]
    server = str(BENCH / "servers" / "mqtt_broker_server.py")
    for label, python in (("MqttBroker CPython", REPO / ".venv" / "bin" / "python"),
                          ("MqttBroker PyPy", REPO / ".venv-pypy" / "bin" / "python")):
        if python.exists():
            contenders.append((label, [str(python), server]))
        else:
            log(f"{label}: {python} missing, skipped")
    load_before = os.getloadavg()
    results: dict[str, dict[str, list[dict[str, float]]]] = {w: {} for w in WORKLOADS}
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_mqttgen(Path(tmp))
        for round_no in range(args.rounds):
            order = contenders if round_no % 2 == 0 else contenders[::-1]
            for label, argv in order:
                broker = Broker(label, argv, Path(tmp))
                try:
                    for name, (pubs, subs, qos, window) in WORKLOADS.items():
                        # PyPy's JIT warms on the first workload's warm-up; each gets one.
                        r = run_load(exe, broker.port, pubs, subs, qos, window,
                                     args.duration, args.warmup)
                        log(f"round {round_no + 1} {label:20} {name}: "
                            f"{r['deliveries_per_sec']:.0f}/s p99 {r['p99_us']} us")
                        results[name].setdefault(label, []).append(r)
                finally:
                    broker.stop()
    load_after = os.getloadavg()
    lines = [
        "# MQTT broker benchmark",
        "",
        f"`python3 bench/mqtt_bench.py --rounds {args.rounds} --duration {args.duration}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Brokers pinned to CPU 0, "
        "bench/loadgen/mqttgen pinned to CPU 1, loopback, 64-byte payloads, MQTT 3.1.1, "
        "clean sessions. Closed loop: each publisher keeps a window of messages "
        "outstanding; a message is complete when every subscriber has it.",
        "",
        f"Machine load average (1 min) before/after: {load_before[0]:.1f} / "
        f"{load_after[0]:.1f} on {os.cpu_count()} cores; min-max over rounds in brackets.",
        "",
        "| workload | broker | deliveries/s (median) | p99 latency ms | vs mosquitto |",
        "|---|---|---:|---:|---:|",
    ]
    for name, by_label in results.items():
        base = by_label.get("mosquitto", [])
        for label, runs in by_label.items():
            rates = [r["deliveries_per_sec"] for r in runs]
            p99 = statistics.median(r["p99_us"] for r in runs) / 1000
            ratio = ""
            if label != "mosquitto" and base:
                ratio = "{:.2f}x".format(statistics.median(
                    r["deliveries_per_sec"] / b["deliveries_per_sec"]
                    for r, b in zip(runs, base)))
            lost = sum(r["stalled"] + r["errors"] for r in runs)
            lines.append(
                f"| {name} | {label} | {statistics.median(rates):,.0f} "
                f"[{min(rates):,.0f}-{max(rates):,.0f}] | {p99:.1f} | {ratio}"
                f"{' (lost/errors: ' + str(int(lost)) + ')' if lost else ''} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
