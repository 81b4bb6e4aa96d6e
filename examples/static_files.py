"""Static file server: index.html, MIME types, ETag/304 and Range come from Mongoose.

    python examples/static_files.py [URL] [--root DIR]    # default: the current folder

Ctrl-C or SIGTERM stops it.
"""

import argparse
import os

from pymongoose import MG_EV_HTTP_MSG, Manager


def main():
    parser = argparse.ArgumentParser(description="Serve the files under a folder.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    parser.add_argument("--root", default=".", help="folder to serve (default: .)")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        parser.error(f"--root {args.root!r} is not a folder")

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            # Paths that try to escape `root` (/../etc/passwd) are refused by Mongoose.
            conn.serve_dir(data, root_dir=root)

    mgr = Manager(handler, events=(MG_EV_HTTP_MSG,))
    listener = mgr.listen(args.listen or args.url)
    ip, port, is_ipv6 = listener.local_addr
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"Serving {root} on http://{host}:{port}"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
