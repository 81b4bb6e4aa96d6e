"""Real Starlette and FastAPI applications on pymongoose.asgi, driven by real clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from asgi_helpers import LOOP_KINDS, TIMEOUT, running_asgi
from fastapi import FastAPI, HTTPException
from fastapi import WebSocket as FastAPIWebSocket
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

events: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    events.append("startup")
    yield {"greeting": "hello from lifespan"}
    events.append("shutdown")


async def hello(request: Request) -> Response:
    return PlainTextResponse("Hello, World!")


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type="application/octet-stream")


async def greeting(request: Request) -> Response:
    return JSONResponse({"greeting": request.state.greeting})


async def numbers(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"{i}\n".encode()
            await asyncio.sleep(0)
    return StreamingResponse(parts(), media_type="text/plain")


async def broken(request: Request) -> Response:
    raise ValueError("deliberate failure")


async def ws_echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close-me":
                await ws.close(code=4321, reason="as asked")
                return
            if message.get("text") is not None:
                await ws.send_text("echo:" + message["text"])
            else:
                await ws.send_bytes(message["bytes"][::-1])
    except WebSocketDisconnect:
        return


async def ws_reject(ws: WebSocket) -> None:
    await ws.close()


starlette_app = Starlette(
    routes=[
        Route("/", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/greeting", greeting),
        Route("/numbers", numbers),
        Route("/broken", broken),
        WebSocketRoute("/ws", ws_echo),
        WebSocketRoute("/reject", ws_reject),
    ],
    lifespan=lifespan,
)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_starlette_http(loop_kind: str, caplog: pytest.LogCaptureFixture) -> None:
    events.clear()
    with running_asgi(starlette_app, loop_kind) as srv:
        assert events == ["startup"]
        with requests.Session() as session:
            reply = session.get(srv.url, timeout=TIMEOUT)
            assert (reply.status_code, reply.text) == (200, "Hello, World!")
            assert reply.headers["content-type"].startswith("text/plain")
            big = bytes(range(256)) * 4096  # 1 MiB
            assert session.post(srv.url + "/echo", data=big, timeout=TIMEOUT).content == big
            assert session.get(srv.url + "/greeting", timeout=TIMEOUT).json() == {
                "greeting": "hello from lifespan"}
            streamed = session.get(srv.url + "/numbers", timeout=TIMEOUT)
            assert streamed.text == "0\n1\n2\n3\n4\n"
            assert streamed.headers["transfer-encoding"] == "chunked"
            head = session.head(srv.url, timeout=TIMEOUT)
            assert head.headers["content-length"] == "13" and head.content == b""
            assert session.get(srv.url + "/missing", timeout=TIMEOUT).status_code == 404
            assert session.get(srv.url + "/broken", timeout=TIMEOUT).status_code == 500
            assert session.get(srv.url, timeout=TIMEOUT).text == "Hello, World!"
    assert events == ["startup", "shutdown"]
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR
                and "deliberate failure" in str(r.exc_info)]
    assert len(failures) == 1


def test_starlette_websocket() -> None:
    with running_asgi(starlette_app) as srv:
        ws = websocket.create_connection(srv.ws_url + "/ws", timeout=TIMEOUT)
        ws.send("hi")
        assert ws.recv() == "echo:hi"
        ws.send_binary(b"abc")
        assert ws.recv() == b"cba"
        ws.send("close-me")
        opcode, frame = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 4321 and frame[2:] == b"as asked"
        ws.close()
        with pytest.raises(websocket.WebSocketBadStatusException) as rejected:
            websocket.create_connection(srv.ws_url + "/reject", timeout=TIMEOUT)
        assert rejected.value.status_code == 403
        # still serving
        again = websocket.create_connection(srv.ws_url + "/ws", timeout=TIMEOUT)
        again.send("x")
        assert again.recv() == "echo:x"
        again.close()


class Item(BaseModel):
    name: str
    price: float


fastapi_app = FastAPI()


@fastapi_app.post("/items/{item_id}")
async def create_item(item_id: int, item: Item) -> dict[str, Any]:
    return {"id": item_id, "name": item.name, "total": item.price * 2}


@fastapi_app.get("/teapot")
async def teapot() -> None:
    raise HTTPException(status_code=418, detail="short and stout")


@fastapi_app.get("/sync")
def sync_endpoint() -> dict[str, str]:  # run in a worker thread by FastAPI
    return {"ran": "in a thread"}


@fastapi_app.websocket("/ws")
async def fastapi_ws(ws: FastAPIWebSocket) -> None:
    await ws.accept()
    data = await ws.receive_json()
    await ws.send_json({"got": data})
    await ws.close()


def test_fastapi_http_and_websocket() -> None:
    with running_asgi(fastapi_app) as srv:
        reply = requests.post(srv.url + "/items/7", json={"name": "pen", "price": 1.5},
                              timeout=TIMEOUT)
        assert reply.json() == {"id": 7, "name": "pen", "total": 3.0}
        invalid = requests.post(srv.url + "/items/7", json={"name": "pen"}, timeout=TIMEOUT)
        assert invalid.status_code == 422
        teapot = requests.get(srv.url + "/teapot", timeout=TIMEOUT)
        assert teapot.status_code == 418 and teapot.json() == {"detail": "short and stout"}
        assert requests.get(srv.url + "/sync", timeout=TIMEOUT).json() == {"ran": "in a thread"}
        ws = websocket.create_connection(srv.ws_url + "/ws", timeout=TIMEOUT)
        ws.send('{"a": 1}')
        assert ws.recv() == '{"got":{"a":1}}'
        opcode, frame = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(frame[:2], "big") == 1000
        ws.close()


def test_static_root_is_served_before_the_app(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file.txt").write_text("static content")
    caplog.set_level(logging.INFO, logger="pymongoose.access")
    with running_asgi(starlette_app, root=str(tmp_path), access_log=True) as srv:
        assert requests.get(srv.url + "/file.txt", timeout=TIMEOUT).text == "static content"
        assert requests.get(srv.url + "/", timeout=TIMEOUT).text == "Hello, World!"
        assert requests.get(srv.url + "/../etc/passwd", timeout=TIMEOUT).status_code == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "pymongoose.access"]
    assert any('"GET / HTTP/1.1" 200 13' in line for line in lines), lines
