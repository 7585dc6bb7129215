"""The socket under an SSE stream: capturing uvicorn's transport, and dropping it when a client
that was told to close does not go.

Closing an HTTP response politely waits for the client to read it; a client that stopped
reading would hold its connection (and its queue) forever. The edge keeps the transport at hand
so a watchdog can abort the socket once the grace period is over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

#: Key under which :class:`TransportCapture` leaves uvicorn's transport in the ASGI scope.
TRANSPORT_KEY = "ofa.transport"


class TransportCapture:
    """ASGI wrapper that leaves uvicorn's transport in the scope, so the edge can drop the
    socket of a client that stopped reading (closing it politely would wait for the client)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            # uvicorn's ``send`` is a bound method of its protocol object, which has the transport.
            scope[TRANSPORT_KEY] = getattr(getattr(send, "__self__", None), "transport", None)
        await self.app(scope, receive, send)


class CloseWatchdog:
    """Aborts a client's socket if its stream has not ended ``grace`` seconds after
    :meth:`arm` (the client was cut off or told to close, and does not read the last words)."""

    def __init__(self, transport: Any, grace: float) -> None:
        self.transport = transport
        self.grace = grace
        self.done = False
        self.handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        """Start the grace period (once; without a transport there is nothing to drop)."""
        if self.handle is None and self.transport is not None:
            self.handle = asyncio.get_running_loop().call_later(self.grace, self._fire)

    def _fire(self) -> None:
        if not self.done:
            with contextlib.suppress(Exception):
                self.transport.abort()

    def disarm(self) -> None:
        """The stream ended by itself: never abort."""
        self.done = True
        if self.handle is not None:
            self.handle.cancel()
