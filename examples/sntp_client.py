"""Ask an SNTP server for the time and print it.

    python examples/sntp_client.py [URL] [--dns-server udp://IP:53]
    # default URL: udp://time.google.com:123

Exits 0 after printing the time, 1 when the server does not answer properly.
"""

import argparse
import datetime
import sys

from pymongoose import MG_EV_ERROR, MG_EV_SNTP_TIME, Manager


def main():
    parser = argparse.ArgumentParser(description="Print the time an SNTP server reports.")
    parser.add_argument("url", nargs="?", default="udp://time.google.com:123")
    parser.add_argument("--dns-server", help="DNS server for a host name (udp://IP:port)")
    parser.add_argument("--timeout-ms", type=int, default=3000)
    args = parser.parse_args()

    outcome = {}

    def handler(conn, ev, data):
        if ev == MG_EV_SNTP_TIME:
            outcome["ms"] = data  # milliseconds since the epoch
        elif ev == MG_EV_ERROR:
            outcome["error"] = data

    with Manager(dns_server=args.dns_server) as mgr:
        conn = mgr.sntp_connect(args.url, handler, timeout_ms=args.timeout_ms)
        while not conn.is_closed:  # it closes after the answer or an error
            mgr.poll(100)

    if "ms" in outcome:
        when = datetime.datetime.fromtimestamp(outcome["ms"] / 1000, datetime.timezone.utc)
        print(f"{when.isoformat(timespec='milliseconds')} ({outcome['ms']} ms since the epoch)")
        return 0
    print(f"no time from {args.url}: {outcome.get('error', 'no answer')}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
