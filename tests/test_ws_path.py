"""The batched WebSocket message path: views over queued messages and ws_send's checks.

Several frames sent in one segment arrive in one batch (Manager._drain), which lends
each handler call one reused view while nobody keeps it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websocket
from conftest import serving
from test_lifetime import poll_until, port_of, receive_available, ws_client, ws_frame

from pymongoose import (
    MG_EV_HTTP_MSG,
    MG_EV_WS_MSG,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_TEXT,
    Connection,
    Manager,
    MessageExpiredError,
    WsMessage,
)
from pymongoose import connection as connection_module
from pymongoose.aio import AsyncManager

TIMEOUT = 10.0


def test_a_view_from_a_handler_that_raised_has_expired() -> None:
    """The view a raising handler had (reachable from the kept exception's traceback)
    is expired; the messages after it get their own live views."""
    errors: list[BaseException] = []
    seen: list[bytes] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            seen.append(data.data)
            if data.data == b"raise":
                raise RuntimeError("boom")
            conn.ws_send(data.data, WEBSOCKET_OP_TEXT)

    mgr = Manager(handler, error_handler=errors.append)
    try:
        ws = ws_client(mgr, port_of(mgr.listen("http://127.0.0.1:0")))
        ws.sendall(ws_frame(b"one") + ws_frame(b"raise") + ws_frame(b"three"))
        poll_until(mgr, lambda: len(seen) == 3)
        ws.close()
    finally:
        mgr.close()
    assert seen == [b"one", b"raise", b"three"]
    assert len(errors) == 1
    tb = errors[0].__traceback__
    while tb is not None and tb.tb_frame.f_code.co_name != "handler":
        tb = tb.tb_next
    assert tb is not None
    view = tb.tb_frame.f_locals["data"]
    assert isinstance(view, WsMessage)
    assert not view.is_valid
    for name in ("data", "text", "flags", "op"):
        with pytest.raises(MessageExpiredError):
            getattr(view, name)


def test_views_of_one_batch_are_reused_only_when_not_kept() -> None:
    kept: list[WsMessage] = []
    ids: list[int] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            ids.append(id(data))
            assert data.data == b"msg %d" % (len(ids) - 1)
            if data.data == b"msg 1":
                kept.append(data)

    mgr = Manager(handler)
    try:
        ws = ws_client(mgr, port_of(mgr.listen("http://127.0.0.1:0")))
        ws.sendall(b"".join(ws_frame(b"msg %d" % i) for i in range(4)))
        poll_until(mgr, lambda: len(ids) == 4)
        ws.close()
    finally:
        mgr.close()
    assert len(kept) == 1 and not kept[0].is_valid
    with pytest.raises(MessageExpiredError):
        _ = kept[0].data
    assert ids[2] != ids[1]  # the kept one was replaced, never handed out again


class _Text(str):
    """A str subclass: send() took one, and ws_send() must too (it once refused it)."""


class _Bytes(bytes):
    """A bytes subclass, which is not the exact-bytes fast path."""


@pytest.mark.parametrize("payload", ["text ✓", b"bytes", bytearray(b"bytearray"),
                                     memoryview(b"memoryview"), _Text("subclass ✓"),
                                     _Bytes(b"bytes subclass")])
def test_ws_send_accepts_str_and_buffers(payload: Any) -> None:
    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(payload, WEBSOCKET_OP_BINARY)

    with serving(handler) as server:
        ws = websocket.create_connection(server.ws_url + "/ws", timeout=TIMEOUT)
        try:
            ws.send("go")
            expected = payload.encode() if isinstance(payload, str) else bytes(payload)
            assert ws.recv() == expected
        finally:
            ws.close()


def test_ws_send_checks_the_opcode_in_c_and_sends_nothing() -> None:
    results: list[Any] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            for op in (99, -1, 3):
                try:
                    conn.ws_send(b"x", op)
                except ValueError as exc:
                    results.append(str(exc))
            results.append(conn.ws_send(b"ok", WEBSOCKET_OP_TEXT))

    mgr = Manager(handler)
    try:
        ws = ws_client(mgr, port_of(mgr.listen("http://127.0.0.1:0")))
        ws.sendall(ws_frame(b"go"))
        poll_until(mgr, lambda: len(results) == 4)
        received = bytearray()
        ws.setblocking(False)
        poll_until(mgr, lambda: receive_available(ws, received) or len(received) >= 4)
        ws.close()
    finally:
        mgr.close()
    assert all("WEBSOCKET_OP_" in text for text in results[:3])
    assert results[3] == 4  # two header bytes and the payload
    assert bytes(received) == b"\x81\x02ok"  # nothing was queued for the refused opcodes


def test_the_aio_hook_is_counted_while_installed() -> None:
    before = connection_module._wake_hooks

    async def main() -> None:
        async with AsyncManager() as amgr:
            assert connection_module._wake_hooks == before + 1
            assert amgr.started

    asyncio.run(main())
    assert connection_module._wake_hooks == before
