"""TCP echo server: whatever a client sends comes straight back.

    python examples/tcp_echo.py [URL]    # default tcp://127.0.0.1:8000

Try it with `nc 127.0.0.1 8000`. Ctrl-C or SIGTERM stops it.
"""

import argparse

from pymongoose import MG_EV_READ, Manager


def handler(conn, ev, data):
    if ev == MG_EV_READ:
        # Take everything received so far out of the buffer and queue it for sending.
        conn.send(conn.recv_data(consume=True))


def main():
    parser = argparse.ArgumentParser(description="Echo TCP data back to its sender.")
    parser.add_argument("url", nargs="?", default="tcp://127.0.0.1:8000")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    args = parser.parse_args()

    mgr = Manager(handler, events=(MG_EV_READ,))
    listener = mgr.listen(args.listen or args.url)  # tcp:// is raw TCP: no HTTP parsing
    ip, port, is_ipv6 = listener.local_addr
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"TCP echo on tcp://{host}:{port}"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
