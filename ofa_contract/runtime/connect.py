"""One place that connects to NATS and decides the reconnect policy.

nats.py's defaults (``max_reconnect_attempts=60``, ``reconnect_time_wait=2``) give up after about
two minutes of outage and leave a closed client behind that nothing replaces; every long-lived
connection of ofa-serving instead reconnects forever (:attr:`ReconnectPolicy.FOREVER`) unless the
caller runs its own reconnect loop (:attr:`ReconnectPolicy.NONE`, the bridge publisher).

The policy applies to *re*connects only. The first connect always fails fast: nats.py's own
first ``connect`` retries an unreachable server forever under both ``max_reconnect_attempts=-1``
and ``0`` (it counts 0 as "unlimited"), which hid the outage from
:func:`~ofa_contract.runtime.waiting.wait_for_service` and from SIGTERM. So :func:`connect_nats`
connects with :data:`_FIRST_CONNECT` and sets the policy on the client once it is connected.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoServersError

from ofa_contract.compat import nats_set_reconnect

Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]

_log = logging.getLogger("ofa_serving.contract.nats")


class ReconnectPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a NATS client reconnects (nats.py waits a fixed time, with jitter, between tries)."""

    FOREVER: ClassVar[ReconnectPolicy]
    NONE: ClassVar[ReconnectPolicy]

    #: False: the connection closes on the first disconnect (the caller reconnects itself).
    allow_reconnect: bool = True
    #: -1 = never give up.
    max_reconnect_attempts: int = -1
    #: Seconds between reconnect attempts (the back-off cap: nats.py does not grow it).
    reconnect_time_wait: float = 2.0
    #: Seconds one connection attempt may take.
    connect_timeout: float = 2.0
    #: Seconds between client pings, and unanswered pings before the server counts as gone.
    ping_interval: float = 120.0
    max_outstanding_pings: int = 2

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        return msgspec.structs.asdict(self)


ReconnectPolicy.FOREVER = ReconnectPolicy()
ReconnectPolicy.NONE = ReconnectPolicy(allow_reconnect=False, max_reconnect_attempts=0)

#: Reconnect options of the first connect: no wait between tries, and nats.py drops a server
#: from its pool after ``max_reconnect_attempts + 1`` failures (1 is the smallest budget it
#: honours), so an unreachable pool raises ``NoServersError`` after two quick tries per server
#: (a server that is up is reached on its first); ``allow_reconnect=False`` makes a server that
#: answers but rejects the handshake raise at once too.
_FIRST_CONNECT: dict[str, Any] = {
    "allow_reconnect": False,
    "max_reconnect_attempts": 1,
    "reconnect_time_wait": 0.0,
}


class _ConnectionLog:
    """Logs a disconnect and the matching reconnect once each, and only the first error of an
    outage at WARNING (nats.py reports every failed reconnect attempt to ``error_cb``). Errors of
    the first connect are not logged: :func:`connect_nats` raises them, and the caller (usually
    ``wait_for_service``) says what it waits for."""

    def __init__(self, name: str, log: logging.Logger) -> None:
        self.name = name
        self.log = log
        self.down = False
        self.errors = 0
        self.client: NatsClient | None = None
        #: The last failure of the first connect (its caller reports it, not this log).
        self.first_error: Exception | None = None

    def disconnected(self) -> None:
        if self.client is not None and self.client.is_closed:
            return  # our own close(): not an outage
        if not self.down:
            self.down = True
            self.log.warning("NATS connection %s lost; reconnecting", self.name)

    def reconnected(self) -> None:
        self.down = False
        self.errors = 0
        self.log.warning("NATS connection %s re-established", self.name)

    def error(self, exc: Exception) -> None:
        if self.client is None:
            self.first_error = exc
            return
        self.errors += 1
        level = logging.WARNING if self.errors == 1 else logging.DEBUG
        self.log.log(level, "NATS connection %s: %s: %s", self.name, type(exc).__name__, exc)


async def connect_nats(
    servers: str | list[str],
    name: str,
    *,
    policy: ReconnectPolicy = ReconnectPolicy.FOREVER,
    log: logging.Logger | None = None,
    error_cb: ErrorCallback | None = None,
    disconnected_cb: Callback | None = None,
    reconnected_cb: Callback | None = None,
    closed_cb: Callback | None = None,
    **options: Any,
) -> NatsClient:
    """Connect to NATS (``servers``: URL, comma-separated URLs or a list) with ``policy``.

    Raises soon when the first connection fails, whatever the policy (wrap it in
    :func:`ofa_contract.runtime.waiting.wait_for_service` to wait at start-up); ``policy`` rules
    the reconnects after that first success (module docstring). The callbacks are
    called after the connection's own once-per-outage logging. ``options`` go to
    ``nats.connect`` unchanged (e.g. ``pending_size``).
    """
    urls = (
        [u.strip() for u in servers.split(",") if u.strip()]
        if isinstance(servers, str)
        else servers
    )
    state = _ConnectionLog(name, log or _log)

    async def on_error(exc: Exception) -> None:
        state.error(exc)
        if error_cb is not None:
            await error_cb(exc)

    async def on_disconnected() -> None:
        state.disconnected()
        if disconnected_cb is not None:
            await disconnected_cb()

    async def on_reconnected() -> None:
        state.reconnected()
        if reconnected_cb is not None:
            await reconnected_cb()

    async def on_closed() -> None:
        if closed_cb is not None:
            await closed_cb()

    try:
        nc = await nats.connect(
            urls,
            name=name,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            closed_cb=on_closed,
            **{**policy.options(), **options, **_FIRST_CONNECT},
        )
    except NoServersError as exc:
        # "no servers available" hides why: raise what the last attempt ran into.
        if state.first_error is not None:
            raise state.first_error from exc
        raise
    nats_set_reconnect(
        nc,
        allow_reconnect=policy.allow_reconnect,
        max_reconnect_attempts=policy.max_reconnect_attempts,
        reconnect_time_wait=policy.reconnect_time_wait,
    )
    state.client = nc
    return nc
