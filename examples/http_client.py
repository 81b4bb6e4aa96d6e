"""HTTP client: fetch one URL, print the status line, headers and body, then exit.

    python examples/http_client.py [URL] [--timeout SECONDS]   # default http://127.0.0.1:8000/

Exits with status 0 once a response arrived (whatever its status code), 1 when the
connection failed, closed early or timed out. Plain http:// only.
"""

import argparse
import sys
import time
from urllib.parse import urlsplit

from pymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_POLL,
    Manager,
)


def main():
    parser = argparse.ArgumentParser(description="Fetch a URL and print the response.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000/")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default: 10)")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    if parts.scheme != "http" or not parts.netloc:
        parser.error(f"{args.url!r} is not an http:// URL")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + args.timeout
    outcome = {"done": False, "error": None}

    def finish(error=None):
        if not outcome["done"]:
            outcome["done"], outcome["error"] = True, error
            mgr.close()  # from a handler: takes effect when this poll returns, ending run()

    def handler(conn, ev, data):
        if ev == MG_EV_CONNECT:
            # Mongoose connects; writing the request is up to us.
            conn.send(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                      "Connection: close\r\n\r\n")
        elif ev == MG_EV_HTTP_MSG:
            # For a response, method/uri/proto hold "HTTP/1.1", "200" and "OK".
            print(f"{data.method} {data.uri} {data.proto}")
            for name, value in data.headers():
                print(f"{name}: {value}")
            print(flush=True)
            sys.stdout.buffer.write(data.body_bytes)
            sys.stdout.buffer.flush()
            finish()
        elif ev == MG_EV_ERROR:
            finish(data)  # data is Mongoose's error message
        elif ev == MG_EV_CLOSE:
            finish("connection closed before a response arrived")
        elif ev == MG_EV_POLL and time.monotonic() > deadline:
            finish(f"no response within {args.timeout:g} s")

    mgr = Manager()
    mgr.connect(args.url, handler,
                events=(MG_EV_CONNECT, MG_EV_HTTP_MSG, MG_EV_ERROR, MG_EV_CLOSE, MG_EV_POLL))
    print(f"Fetching {args.url}", file=sys.stderr, flush=True)
    mgr.run(poll_ms=50)  # returns when finish() closed the Manager, or on Ctrl-C
    if outcome["error"] is not None:
        print(f"error: {args.url}: {outcome['error']}", file=sys.stderr)
        return 1
    return 0 if outcome["done"] else 1


if __name__ == "__main__":
    sys.exit(main())
