"""An MqttBroker in its own process, for tests that kill it: ``python
tests/mqtt_broker_child.py DB_PATH`` listens on 127.0.0.1, port 0, keeps its state in
DB_PATH (SQLite) and prints ``port N`` once it serves."""

from __future__ import annotations

import sys

from pymongoose import Manager, MqttBroker


def main() -> None:
    # Queues large enough for all a test sends: what is dropped is then a loss.
    broker = MqttBroker(persist=sys.argv[1], max_queued_messages=100_000,
                        max_queued_bytes=1 << 30)
    manager = Manager()
    listener = manager.mqtt_listen("mqtt://127.0.0.1:0", broker, events=MqttBroker.EVENTS)
    addr = listener.local_addr
    assert addr is not None
    print(f"port {addr[1]}", flush=True)
    while True:
        manager.poll(100)


if __name__ == "__main__":
    main()
