"""UDP echo server: every datagram is sent back to the address it came from.

    python examples/udp_echo.py [URL]    # default udp://127.0.0.1:8000

Try it with `nc -u 127.0.0.1 8000`. Ctrl-C or SIGTERM stops it.
"""

import argparse

from pymongoose import MG_EV_READ, Manager


def handler(conn, ev, data):
    if ev == MG_EV_READ:
        # A UDP listener receives every datagram itself; while this event runs, its
        # remote address is the sender's, so send() answers that sender.
        conn.send(conn.recv_data(consume=True))


def main():
    parser = argparse.ArgumentParser(description="Echo UDP datagrams back to their sender.")
    parser.add_argument("url", nargs="?", default="udp://127.0.0.1:8000")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    args = parser.parse_args()

    mgr = Manager(handler, events=(MG_EV_READ,))
    listener = mgr.listen(args.listen or args.url)
    ip, port, is_ipv6 = listener.local_addr
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"UDP echo on udp://{host}:{port}"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
