"""A small Starlette application for the command-line tests (``--asgi``)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello from starlette in {os.getpid()}")


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": (await request.body()).decode()})


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


app = Starlette(routes=[Route("/", hello), Route("/echo", echo, methods=["POST"]),
                        WebSocketRoute("/ws", ws_echo)])
