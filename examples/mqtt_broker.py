"""MQTT broker: routes every PUBLISH to the clients subscribed to its topic.

    python examples/mqtt_broker.py [URL]    # default mqtt://127.0.0.1:1883

MQTT 3.1.1 and 5 clients; subscriptions with + and # wildcards; QoS 0, 1 and 2;
retained messages; wills. Try it with examples/mqtt_client.py, or mosquitto's tools:

    mosquitto_sub -p 1883 -t 'sensors/#' -v &
    mosquitto_pub -p 1883 -t sensors/kitchen/temp -m 21.5

Ctrl-C or SIGTERM stops it.
"""

import argparse

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_MQTT_CMD,
    MQTT_CMD_CONNECT,
    Manager,
    MqttBroker,
)


def main():
    parser = argparse.ArgumentParser(description="A small MQTT broker.")
    parser.add_argument("url", nargs="?", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    parser.add_argument("--quiet", action="store_true", help="do not log clients")
    args = parser.parse_args()

    broker = MqttBroker()  # the routing: sessions, subscriptions, retained messages

    def handler(conn, ev, data):
        broker(conn, ev, data)  # let the broker do its work, then tell what happened
        if args.quiet:
            return
        if ev == MG_EV_MQTT_CMD and data.cmd == MQTT_CMD_CONNECT:
            print(f"client connected from {conn.remote_addr[0]} "
                  f"(MQTT {'5' if conn.mqtt_version == 5 else '3.1.1'})", flush=True)
        elif ev == MG_EV_ERROR:
            print(f"client dropped: {data}", flush=True)
        elif ev == MG_EV_CLOSE and not conn.is_listening:
            print(f"{len(broker.clients)} clients connected", flush=True)

    mgr = Manager()
    # Only the events the broker and this logging need cross into Python.
    listener = mgr.mqtt_listen(args.listen or args.url, handler,
                               events=(*MqttBroker.EVENTS, MG_EV_ERROR))
    ip, port, is_ipv6 = listener.local_addr
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"MQTT broker on mqtt://{host}:{port}"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
