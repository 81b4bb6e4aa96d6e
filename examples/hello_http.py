"""Hello-world HTTP server: every request gets "Hello, World!".

    python examples/hello_http.py [URL]        # default http://127.0.0.1:8000
    python examples/hello_http.py --listen http://127.0.0.1:0

Ctrl-C or SIGTERM stops it.
"""

import argparse

from pymongoose import MG_EV_HTTP_MSG, Manager


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "Hello, World!")


def main():
    parser = argparse.ArgumentParser(description="Reply 'Hello, World!' to every request.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    args = parser.parse_args()

    # Ask for MG_EV_HTTP_MSG only: every other event is dropped in C.
    mgr = Manager(handler, events=(MG_EV_HTTP_MSG,))
    listener = mgr.listen(args.listen or args.url)
    ip, port, is_ipv6 = listener.local_addr  # the real port, even when asked for port 0
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"Listening on http://{host}:{port}"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
