"""pymongoose's MqttBroker for the MQTT benchmark (bench/mqtt_bench.py).

Usage: ``python mqtt_broker_server.py``: listens on 127.0.0.1, port 0, prints
``PORT <n>`` once listening, serves until SIGTERM or SIGINT. Only the events the
broker needs reach Python (``MqttBroker.EVENTS``).
"""

from __future__ import annotations

import signal
import sys

from pymongoose import Manager, MqttBroker


def main() -> None:
    broker = MqttBroker()
    manager = Manager()
    listener = manager.mqtt_listen("mqtt://127.0.0.1:0", broker, events=MqttBroker.EVENTS)
    addr = listener.local_addr
    assert addr is not None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"PORT {addr[1]}", flush=True)
    while not stop:
        manager.poll(100)
    manager.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
