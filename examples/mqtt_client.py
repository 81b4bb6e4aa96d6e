"""MQTT client: subscribe to a topic, publish a message to it, print what arrives.

    python examples/mqtt_client.py [URL] [--topic T] [--message M] [--qos N] [--version 4|5]

URL defaults to mqtt://127.0.0.1:1883 (run examples/mqtt_broker.py, or mosquitto).
Exits with status 0 once its own message came back, 1 when the broker refused it,
the connection failed or nothing arrived within --timeout seconds.
"""

import argparse
import sys
import time

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_MQTT_CMD,
    MG_EV_MQTT_MSG,
    MG_EV_MQTT_OPEN,
    MQTT_CMD_SUBACK,
    Manager,
    connack_reason,
)


def main():
    parser = argparse.ArgumentParser(description="Publish a message and wait for it.")
    parser.add_argument("url", nargs="?", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--topic", default="pymongoose/demo")
    parser.add_argument("--message", default="hello from pymongoose")
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    parser.add_argument("--version", type=int, choices=(4, 5), default=4)
    parser.add_argument("--username", default="")
    parser.add_argument("--password", default="")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")
    args = parser.parse_args()
    outcome = {"ok": False, "done": False}

    def finish(ok):
        if not outcome["done"]:
            outcome["ok"], outcome["done"] = ok, True
            mgr.close()  # from a handler: takes effect when this poll returns

    def handler(conn, ev, data):
        if ev == MG_EV_MQTT_OPEN:  # data: the CONNACK code
            print(f"connected: {connack_reason(data, args.version)}", flush=True)
            if data == 0:
                conn.mqtt_sub(args.topic, args.qos)
        elif ev == MG_EV_MQTT_CMD and data.cmd == MQTT_CMD_SUBACK:
            print(f"subscribed to {args.topic}", flush=True)
            packet_id = conn.mqtt_pub(args.topic, args.message, qos=args.qos)
            print(f"published {args.message!r} (packet id {packet_id})", flush=True)
        elif ev == MG_EV_MQTT_MSG:  # data: an MqttMessage, valid during this call
            print(f"received on {data.topic} (QoS {data.qos}): {data.text}", flush=True)
            if data.topic == args.topic and data.text == args.message:
                conn.mqtt_disconnect()
                finish(True)
        elif ev == MG_EV_ERROR:
            print(f"error: {data}", file=sys.stderr, flush=True)
            finish(False)
        elif ev == MG_EV_CLOSE:
            finish(False)

    mgr = Manager()
    mgr.mqtt_connect(args.url, handler, username=args.username, password=args.password,
                     version=args.version)
    deadline = time.monotonic() + args.timeout
    while not outcome["done"] and time.monotonic() < deadline:
        mgr.poll(100)
    if not outcome["done"]:
        print("error: timed out", file=sys.stderr)
    mgr.close()
    sys.exit(0 if outcome["ok"] else 1)


if __name__ == "__main__":
    main()
