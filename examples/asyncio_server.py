"""HTTP server on asyncio: answers from the handler, or later from a coroutine.

    python examples/asyncio_server.py [URL]        # default http://127.0.0.1:8000
    python examples/asyncio_server.py --listen http://127.0.0.1:0 --interval 0.5

GET /       "Hello from asyncio!", answered by the handler itself
GET /beat   waits for the next beat of a background coroutine (one every --interval
            seconds), then that request's own coroutine answers: {"beat": 7}

Ctrl-C or SIGTERM stops it.
"""

import argparse
import asyncio
import contextlib
import signal

from pymongoose import MG_EV_HTTP_MSG
from pymongoose.aio import AsyncManager


class Heartbeat:
    """A background coroutine's counter that other coroutines can wait on."""

    def __init__(self):
        self.count = 0
        self._beat = asyncio.Condition()

    async def run(self, interval):
        while True:
            await asyncio.sleep(interval)
            async with self._beat:
                self.count += 1
                self._beat.notify_all()

    async def next_beat(self):
        async with self._beat:
            await self._beat.wait()
            return self.count


async def reply_at_next_beat(conn, heartbeat):
    beat = await heartbeat.next_beat()
    if not conn.is_closed:  # the client may have given up meanwhile
        conn.reply_json({"beat": beat})


def make_handler(heartbeat, tasks):
    def handler(conn, ev, data):
        if ev != MG_EV_HTTP_MSG:
            return
        if data.uri == "/beat":
            # Handlers are plain functions; a coroutine takes over and replies later.
            task = asyncio.get_running_loop().create_task(reply_at_next_beat(conn, heartbeat))
            tasks.add(task)  # the loop keeps only a weak reference to tasks
            task.add_done_callback(tasks.discard)
        else:
            conn.reply(200, "Hello from asyncio!\n")

    return handler


async def serve(url, interval):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    heartbeat = Heartbeat()
    tasks = set()
    async with AsyncManager(make_handler(heartbeat, tasks), events=(MG_EV_HTTP_MSG,)) as amgr:
        listener = amgr.listen(url)
        ip, port, is_ipv6 = listener.local_addr  # the real port, even when asked for 0
        host = f"[{ip}]" if is_ipv6 else ip
        print(f"Listening on http://{host}:{port}", flush=True)
        beating = loop.create_task(heartbeat.run(interval))
        await stop.wait()
        for task in (beating, *tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    # Leaving the block closed the server and every connection.


def main():
    parser = argparse.ArgumentParser(description="An HTTP server driven by asyncio.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between heartbeats (default 1)")
    args = parser.parse_args()
    asyncio.run(serve(args.listen or args.url, args.interval))


if __name__ == "__main__":
    main()
