"""Stream a large download without holding it in memory: flow control by hand.

    python examples/stream_download.py [URL]    # default http://127.0.0.1:8000

GET /download?size=BYTES (default 100 MiB) returns that many bytes of a generated
pattern, chunked: 64 KiB blocks, each starting with its index as 8 big-endian bytes,
then bytes 0..255 repeating. Data is produced only while the connection's send buffer
holds less than HIGH_WATER bytes, so however slow the client, the server's memory stays
flat. Ctrl-C or SIGTERM stops it.
"""

import argparse

from pymongoose import MG_EV_HTTP_MSG, MG_EV_POLL, MG_EV_WRITE, Manager

BLOCK = 64 * 1024
HIGH_WATER = 1024 * 1024  # refill the send buffer up to about this much
DEFAULT_SIZE = 100 * 1024 * 1024
STREAM_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Transfer-Encoding": "chunked",  # reply() then sends no Content-Length
    "Connection": "close",
}


class Download:
    """What is left to send on one connection; one reusable block, no copies."""

    def __init__(self, size):
        self.remaining = size
        self.index = 0
        self.block = bytearray(bytes(range(256)) * (BLOCK // 256))

    def top_up(self, conn):
        while self.remaining > 0 and conn.send_len < HIGH_WATER:
            self.block[:8] = self.index.to_bytes(8, "big")
            n = min(BLOCK, self.remaining)
            conn.http_chunk(memoryview(self.block)[:n])  # copied into the send buffer
            self.remaining -= n
            self.index += 1
        if self.remaining == 0:
            conn.http_chunk("")  # the last chunk
            conn.drain()  # close once everything is sent
            conn.userdata = None


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        if data.uri != "/download":
            conn.reply(404, "try /download?size=BYTES\n")
            return
        size = data.query_var("size")
        if size is not None and not (size.isdigit() and int(size) > 0):
            conn.reply(400, "size must be a positive number of bytes\n")
            return
        conn.reply(200, headers=STREAM_HEADERS)
        conn.userdata = Download(int(size) if size else DEFAULT_SIZE)
        conn.userdata.top_up(conn)
    elif ev in (MG_EV_WRITE, MG_EV_POLL) and isinstance(conn.userdata, Download):
        # MG_EV_WRITE: some of the buffer went out, there is room again. MG_EV_POLL
        # (every poll) is the backstop.
        conn.userdata.top_up(conn)


def main():
    parser = argparse.ArgumentParser(description="Serve large generated downloads.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    args = parser.parse_args()

    mgr = Manager(handler, events=(MG_EV_HTTP_MSG, MG_EV_WRITE, MG_EV_POLL))
    listener = mgr.listen(args.url)
    ip, port, is_ipv6 = listener.local_addr
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"Downloads on http://{host}:{port}/download?size=BYTES"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
