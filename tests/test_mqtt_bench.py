"""bench/loadgen/mqttgen.c builds and measures MqttBroker: a smoke test of the MQTT
benchmark's load generator (numbers are not checked, only that every message arrived)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mqtt_helpers import broker_thread

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("qos", [0, 1])
def test_mqttgen_against_mqtt_broker(tmp_path: Path, qos: int) -> None:
    exe = tmp_path / "mqttgen"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(REPO / "bench/loadgen/mqttgen.c")],
                   check=True)
    with broker_thread() as server:
        out = subprocess.run([str(exe), "--port", str(server.port), "--publishers", "2",
                              "--subscribers", "3", "--qos", str(qos), "--duration", "0.5",
                              "--warmup", "0.2"],
                             check=True, capture_output=True, text=True, timeout=60)
        assert server.errors == []
    result = json.loads(out.stdout)
    assert result["delivered"] > 0
    assert result["errors"] == 0 and result["stalled"] == 0
    assert result["p99_us"] >= result["p50_us"] > 0
