"""examples/mqtt_broker.py with paho-mqtt clients; examples/mqtt_client.py against
mosquitto and against the example broker."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from _tools import require
from mqtt_helpers import Paho, mosquitto
from subprocess_helpers import run_to_end, running


def test_example_broker_routes_between_paho_clients() -> None:
    with running("examples/mqtt_broker.py", "mqtt://127.0.0.1:0") as child:
        port = int(child.wait_for(r"MQTT broker on mqtt://127\.0\.0\.1:(\d+)").group(1))
        assert port > 0
        kitchen = Paho(port, "kitchen")
        all_temps = Paho(port, "all-temps")
        publisher = Paho(port, "publisher")
        try:
            kitchen.subscribe("home/kitchen/#", 1)
            all_temps.subscribe("home/+/temp", 0)
            publisher.publish("home/kitchen/temp", b"21", 1)
            publisher.publish("home/hall/temp", b"18", 1)
            publisher.publish("home/kitchen/light", b"on", 0)
            publisher.publish("garden/temp", b"12", 1)
            publisher.publish("home/kitchen/end", b"", 1)  # marks the end for kitchen
            publisher.publish("home/end/temp", b"", 1)  # and for all-temps
            assert kitchen.receive_until("home/kitchen/end") == [
                ("home/kitchen/temp", b"21", 1, False),
                ("home/kitchen/light", b"on", 0, False),
                ("home/kitchen/end", b"", 1, False),
            ]
            assert all_temps.receive_until("home/end/temp") == [
                ("home/kitchen/temp", b"21", 0, False),
                ("home/hall/temp", b"18", 0, False),
                ("home/end/temp", b"", 0, False),
            ]
            assert kitchen.messages.empty() and publisher.messages.empty()
        finally:
            for client in (kitchen, all_temps, publisher):
                client.close()
        child.wait_for(r"client connected from 127\.0\.0\.1 \(MQTT 3\.1\.1\)")
        assert child.stop(signal.SIGTERM) == 0


def test_example_client_against_mosquitto(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        for version, qos in (("4", "1"), ("5", "2")):
            done = run_to_end("examples/mqtt_client.py", broker.url, "--topic", "demo/x",
                              "--message", "hi there", "--qos", qos, "--version", version)
            assert done.returncode == 0, done.stderr
            assert "connected: accepted" in done.stdout
            assert f"received on demo/x (QoS {qos}): hi there" in done.stdout


def test_example_client_reports_refusal(tmp_path: Path) -> None:
    require("mosquitto", "mosquitto_passwd")
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "bob", "right"],
                   check=True, capture_output=True)
    with mosquitto(tmp_path, f"allow_anonymous false\npassword_file {passwords}\n") as broker:
        done = run_to_end("examples/mqtt_client.py", broker.url, "--username", "bob",
                          "--password", "wrong")
        assert done.returncode == 1
        assert "connected: not authorized" in done.stdout
        assert "refused" in done.stderr


def test_example_client_against_example_broker() -> None:
    with running("examples/mqtt_broker.py", "mqtt://127.0.0.1:0", "--quiet") as child:
        url = child.wait_for(r"MQTT broker on (mqtt://\S+)").group(1)
        done = run_to_end("examples/mqtt_client.py", url, "--version", "5")
        assert done.returncode == 0, done.stderr
        assert "received on pymongoose/demo (QoS 1): hello from pymongoose" in done.stdout
        assert child.stop(signal.SIGINT) == 0
