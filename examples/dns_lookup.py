"""Look up host names with Mongoose's asynchronous resolver, all at once.

    python examples/dns_lookup.py NAME... [--dns-server udp://IP:53] [--timeout-ms MS]

Prints "NAME IP" for each name found and "NAME error: ..." for the others, in the
order the answers come; exits 1 if any lookup failed. Without --dns-server the first
nameserver of /etc/resolv.conf is asked.
"""

import argparse
import sys

from pymongoose import MG_EV_ERROR, MG_EV_RESOLVE, Manager


def main():
    parser = argparse.ArgumentParser(description="Resolve host names to IP addresses.")
    parser.add_argument("names", nargs="+")
    parser.add_argument("--dns-server", help="udp://IP:port (default: /etc/resolv.conf)")
    parser.add_argument("--timeout-ms", type=int, default=3000)
    args = parser.parse_args()

    failed = []

    def handler_for(name):
        def handler(conn, ev, data):
            if ev == MG_EV_RESOLVE:
                # The lookup is done: remote_addr holds the address found.
                print(f"{name} {conn.remote_addr[0]}", flush=True)
                conn.close()
            elif ev == MG_EV_ERROR:
                print(f"{name} error: {data}", flush=True)
                failed.append(name)
        return handler

    with Manager(dns_server=args.dns_server, dns_timeout_ms=args.timeout_ms) as mgr:
        # A UDP "connection" sends nothing until asked to: connecting one to the name
        # just looks it up. Port 9 is the discard port; nothing is sent there.
        # An IP address needs no lookup: its MG_EV_RESOLVE comes during connect().
        pending = [mgr.connect(f"udp://{name}:9", handler_for(name)) for name in args.names]
        while not all(conn.is_closed for conn in pending):
            mgr.poll(100)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
