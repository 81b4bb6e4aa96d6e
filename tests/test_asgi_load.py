"""Other coroutines keep running on the loop while the ASGI server is under load."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import websocket
from asgi_helpers import LOOP_KINDS, TIMEOUT, running_asgi

CLIENTS = 4
REQUESTS_PER_CLIENT = 150


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan")
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"]})
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(3):
        await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"end"})


async def ticker(stop: threading.Event, period: float) -> list[float]:
    """Note the loop's time every ``period`` seconds until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    ticks = []
    while not stop.is_set():
        await asyncio.sleep(period)
        ticks.append(loop.time())
    return ticks


def http_client(url: str) -> int:
    ok = 0
    with requests.Session() as session:
        for _ in range(REQUESTS_PER_CLIENT):
            reply = session.get(url, timeout=TIMEOUT)
            ok += reply.status_code == 200 and len(reply.content) == 3003
    return ok


def ws_client(url: str) -> int:
    ws = websocket.create_connection(url, timeout=TIMEOUT)
    ok = 0
    for i in range(REQUESTS_PER_CLIENT):
        ws.send(str(i))
        ok += ws.recv() == str(i)
    ws.close()
    return ok


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_other_coroutines_keep_ticking_under_load(loop_kind: str) -> None:
    stop = threading.Event()
    with running_asgi(app, loop_kind) as srv:
        ticks_future = asyncio.run_coroutine_threadsafe(ticker(stop, 0.005), srv.loop)
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS + 1) as pool:
            http = [pool.submit(http_client, srv.url) for _ in range(CLIENTS)]
            ws = pool.submit(ws_client, srv.ws_url)
            results = [f.result(60) for f in http]
            ws_ok = ws.result(60)
        load_seconds = time.monotonic() - started
        stop.set()
        ticks = ticks_future.result(TIMEOUT)
    assert results == [REQUESTS_PER_CLIENT] * CLIENTS
    assert ws_ok == REQUESTS_PER_CLIENT
    # Generous: the ticker ran during the load at all, and no gap swallowed the run.
    assert len(ticks) >= 2
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < max(1.0, load_seconds / 2)
