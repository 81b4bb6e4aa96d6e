"""The ASGI lifespan protocol: startup before serving, shutdown after."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Optional

from ._scope import ASGI_INFO, ASGIApp, Message, ProtocolError, log

__all__ = ["Lifespan", "LifespanFailure"]


class LifespanFailure(RuntimeError):
    """The application reported ``lifespan.startup.failed`` (or ``shutdown.failed``)."""


class Lifespan:
    """Runs the application's lifespan task; tolerates applications without lifespan."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        #: The ``state`` dict; each request scope gets a shallow copy.
        self.state: dict[str, Any] = {}
        self.supported = True
        # Made in the running loop (_exchange): on Python 3.9 a Queue binds to the loop
        # current when it is made, and a server is often built outside its loop.
        self._inbox: Optional[asyncio.Queue[Message]] = None
        self._reply: Optional[asyncio.Future[Message]] = None
        self._task: Optional[asyncio.Task[None]] = None
        self._sent_any = False

    async def _receive(self) -> Message:
        assert self._inbox is not None  # _exchange made it before starting the task
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        self._sent_any = True
        mtype = message.get("type")
        if mtype not in ("lifespan.startup.complete", "lifespan.startup.failed",
                         "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise ProtocolError(f"unexpected ASGI message {mtype!r} in the lifespan")
        reply = self._reply
        if reply is not None and not reply.done():
            reply.set_result(message)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_INFO, "state": self.state}
        try:
            await self._app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not self._sent_any:
                # The usual way of saying "no lifespan here" is to raise on the scope.
                self.supported = False
                log.info("ASGI application does not support lifespan (%r); continuing", exc)
            else:
                log.error("ASGI lifespan task raised", exc_info=exc)
        finally:
            reply = self._reply
            if reply is not None and not reply.done():
                reply.set_result({"type": "lifespan.returned"})

    async def _exchange(self, message: Message) -> Message:
        loop = asyncio.get_running_loop()
        if self._inbox is None:
            self._inbox = asyncio.Queue()
        self._reply = loop.create_future()
        if self._task is None:
            self._task = loop.create_task(self._main())
        elif self._task.done():
            return {"type": "lifespan.returned"}
        await self._inbox.put(message)
        return await self._reply

    async def startup(self) -> None:
        """Send lifespan.startup; raise :class:`LifespanFailure` if the app says it failed."""
        reply = await self._exchange({"type": "lifespan.startup"})
        if reply["type"] == "lifespan.startup.failed":
            raise LifespanFailure(str(reply.get("message", "")))

    async def shutdown(self) -> None:
        """Send lifespan.shutdown and wait for the answer (if lifespan is supported)."""
        if not self.supported or self._task is None:
            return
        reply = await self._exchange({"type": "lifespan.shutdown"})
        if reply["type"] == "lifespan.shutdown.failed":
            log.error("ASGI lifespan shutdown failed: %s", reply.get("message", ""))
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
