"""An ASGI 3.0 server on Mongoose, driven by the asyncio loop that runs the application.

Mongoose parses HTTP and WebSocket in C; each request becomes an ASGI scope and a task
on the same event loop that polls the Manager (pymongoose.aio), so the application's
coroutines and the network never cross threads. ``serve(app)`` runs one until Ctrl-C;
:class:`ASGIServer` serves inside an asyncio program you already have.

Modules: ``server`` (the server and ``serve``), ``_scope`` (scopes from request heads),
``_http`` and ``_ws`` (one request, one WebSocket session), ``_lifespan``.
"""

from ._lifespan import LifespanFailure
from ._scope import ClientDisconnected, ProtocolError
from .server import ASGIServer, serve

__all__ = ["ASGIServer", "ClientDisconnected", "LifespanFailure", "ProtocolError", "serve"]
