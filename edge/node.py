"""One edge node's lifecycle: the NATS connection and its callbacks, the fan-out hub, the resume
planner, the registry heartbeat, and whether the node is ready.

NATS is connected in the background, never inside the server's start-up: while NATS is away the
node still answers ``/ready`` (503, saying what it waits for) and stops at once on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
from typing import Any

from nats.aio.client import Client as NatsClient

from edge.fanout import Hub
from edge.limits import RateLimiter
from edge.metrics import EdgeMetrics
from edge.registry import Registration
from edge.resume import ResumePlanner
from edge.settings import EdgeSettings
from ofa_contract.asset_state import AssetStateReader, open_reader
from ofa_contract.auth import Authorizer, AuthSettings
from ofa_contract.compat import subscription_sid
from ofa_contract.layout import DEFAULT_LAYOUT, Layout
from ofa_contract.runtime import BackgroundTasks, cancel_and_wait, get_logger, wait_for_service
from ofa_contract.runtime.connect import ReconnectPolicy, connect_nats
from ofa_contract.settings import CommonSettings

log = get_logger("edge", "node")

#: How long start-up waits for the first NATS attempt: with NATS up the node serves streams as
#: soon as it listens; with NATS away it listens anyway (and says so on /ready).
_FIRST_ATTEMPT_S = 5.0
#: Live messages are lost while disconnected anyway (clients resume from the stream): come back
#: fast rather than wait nats.py's default 2 s.
_RECONNECT = ReconnectPolicy(reconnect_time_wait=0.5)


class EdgeNode:
    """Everything one running edge holds (one per app, ``app.state.edge``)."""

    def __init__(
        self,
        settings: EdgeSettings,
        common: CommonSettings,
        layout: Layout = DEFAULT_LAYOUT,
        auth: AuthSettings | None = None,
    ) -> None:
        self.settings = settings
        self.common = common
        self.layout = layout
        self.auth_settings = auth or AuthSettings()
        self.auth = Authorizer.from_settings(self.auth_settings)
        self.metrics = EdgeMetrics()
        self.limiter = RateLimiter(settings.max_new_connections_per_s)
        self.edge_id = settings.id or f"{socket.gethostname()}-{os.getpid()}"
        self.nc: NatsClient | None = None
        self.hub: Hub | None = None
        self.planner: ResumePlanner | None = None
        self.registration: Registration | None = None
        #: The asset_state reader of ``snapshot=true``: opened on first use, then kept (opening
        #: the bucket is a JetStream request), forgotten on reconnect and on error.
        self._state_reader: AssetStateReader | None = None
        #: Open SSE streams (the registry publishes it; admission compares it to the cap).
        self.streams = 0
        self.closing = False
        #: (``/ready`` key, what the node waits for) until it serves.
        self._waiting: tuple[str, str] | None = ("nats", "connecting to NATS")
        #: Failed first-connect attempts (shown on /ready while NATS is away).
        self._nats_attempts = 0
        self._stop = asyncio.Event()
        self._settled = asyncio.Event()
        self._tasks = BackgroundTasks("edge node", log)
        self._connector: asyncio.Task[None] | None = None

    @property
    def public_url(self) -> str:
        """URL published in the registry."""
        s = self.settings
        return s.public_url or f"http://{s.host}:{s.port}"

    @property
    def serving(self) -> bool:
        """Whether new streams can be served now (connected, not shutting down)."""
        return (
            self.hub is not None
            and self.nc is not None
            and self.nc.is_connected
            and not self.closing
        )

    def info(self) -> dict[str, Any]:
        """Identity and load of this node (``/info``)."""
        return {
            "service": "ofa-edge",
            "id": self.edge_id,
            "url": self.public_url,
            "groups": list(self.settings.groups),
            "connections": self.streams,
            "asset_subscriptions": len(self.hub.feeds) if self.hub else 0,
            "stream": self.layout.stream,
        }

    async def start(self) -> None:
        """Start connecting in the background; return once the first attempt is decided."""
        self._connector = self._tasks.spawn(self._connect(), name="edge-connect")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FIRST_ATTEMPT_S):
                await self._settled.wait()

    async def _connect(self) -> None:
        """Connect to NATS (waiting with back-off), set up the hub, register, then serve."""
        try:
            nc = await self._wait_nats()
            if nc is None:
                return  # stopped first
            self.nc = nc
            self.hub = self._new_hub(self.nc)
            await self.hub.watch_stream_leader()
            self.planner = ResumePlanner(self.nc, self.layout.stream)
            if not await self._register(self.nc):
                return
            self._waiting = None
            log.info("edge serving", extra={"edge": self.edge_id, "url": self.public_url})
            if self.settings.gc_freeze:
                # Start-up objects (modules, app, routes) never die; moving them out of the
                # collector's generations keeps full collections short (the p99 tail).
                gc.collect()
                gc.freeze()
        finally:
            self._settled.set()

    async def _wait_nats(self) -> NatsClient | None:
        """The NATS connection, waited for with back-off (None when stopped first)."""
        url = self.common.nats_url
        self._waiting = ("nats", f"connecting to NATS at {url}")

        def waiting(reason: str) -> None:
            self._nats_attempts += 1
            self._waiting = ("nats", f"{reason} ({self._nats_attempts} attempts)")
            self._settled.set()

        return await wait_for_service(
            f"NATS at {url}",
            "NATS_URL",
            lambda: connect_nats(
                url,
                f"ofa-edge-{self.edge_id}",
                policy=_RECONNECT,
                log=log,
                error_cb=self._on_error,
                reconnected_cb=self._on_reconnect,
                pending_size=64 * 1024 * 1024,
            ),
            self._stop,
            log,
            on_waiting=waiting,
        )

    def _new_hub(self, nc: NatsClient) -> Hub:
        return Hub(
            nc,
            layout=self.layout,
            metrics=self.metrics,
            history_timeout_s=self.settings.history_timeout_s,
        )

    async def _register(self, nc: NatsClient) -> bool:
        """Publish the registry entry, waiting with back-off (JetStream may be unavailable);
        False when stopped first."""
        s = self.settings
        bucket = self.layout.edges_bucket
        registration = Registration(
            nc,
            bucket=bucket,
            edge_id=self.edge_id,
            url=self.public_url,
            groups=list(s.groups),
            max_connections=s.max_connections,
            connections=lambda: self.streams,
            interval_s=s.heartbeat_s,
            ttl_s=s.registry_ttl_s,
            replicas=s.registry_replicas,
        )
        self._waiting = ("registry", f"registering in KV bucket {bucket!r}")

        def waiting(reason: str) -> None:
            self._waiting = ("registry", reason)
            self._settled.set()

        # Kept before it starts, so that stop() also ends a heartbeat started at the last moment.
        self.registration = registration
        what = f"the edge registry (KV bucket {bucket!r} at {self.common.nats_url})"
        await wait_for_service(
            what, "NATS_URL", registration.start, self._stop, log, on_waiting=waiting
        )
        return not self._stop.is_set()

    async def _on_error(self, exc: Exception) -> None:
        sub = getattr(exc, "sub", None)
        if sub is not None and self.hub is not None:
            feed = self.hub.feed_of_sid(subscription_sid(sub))
            if feed is not None:
                log.warning(
                    "live subscription dropped messages; closing its streams",
                    extra={"asset": feed.asset_uuid},
                )
                self.hub.kill_feed(feed, "edge dropped live data; reconnect")

    async def state_reader(self) -> AssetStateReader | None:
        """The asset_state reader (None while the bucket does not exist yet: the next call
        looks again)."""
        if self._state_reader is None:
            if self.nc is None:
                raise RuntimeError("NATS not connected")
            self._state_reader = await open_reader(self.nc.jetstream(), self.layout.state_bucket)
        return self._state_reader

    def forget_state_reader(self) -> None:
        """Reopen the asset_state bucket on the next snapshot (after a reconnect or an error)."""
        self._state_reader = None

    async def _on_reconnect(self) -> None:
        self.forget_state_reader()
        # Live messages published while disconnected are gone from the live path: every
        # client resumes from its Last-Event-ID, which reads them from the stream.
        if self.hub is not None:
            log.warning("NATS reconnected; closing live streams so clients resume")
            self.hub.kill_all("edge lost its NATS connection; reconnect")

    def begin_shutdown(self) -> None:
        """Stop taking streams, stop waiting for NATS, and tell clients to reconnect (to
        another edge). Called on SIGTERM/SIGINT: must return at once."""
        if self.closing:
            return
        self.closing = True
        self._stop.set()
        if self._connector is not None and not self._connector.done():
            log.info("shutting down while waiting for NATS")
            self._connector.cancel()
        if self.hub is not None:
            log.info("shutting down: closing streams", extra={"streams": len(self.hub.clients)})
            self.hub.begin_shutdown("edge shutting down; reconnect")

    async def stop(self) -> None:
        """Deregister and close the NATS connection."""
        self.begin_shutdown()
        await cancel_and_wait(self._connector)
        await self._tasks.close()
        if self.hub is not None:
            await self.hub.close()
        if self.registration is not None:
            await self.registration.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def ready_issues(self) -> dict[str, str]:
        """Issues preventing this node from serving (empty when ready)."""
        issues: dict[str, str] = {}
        if self.closing:
            issues["shutdown"] = "edge is shutting down"
        if self._waiting is not None:
            issues[self._waiting[0]] = self._waiting[1]
            return issues
        if self.nc is None or not self.nc.is_connected:
            issues["nats"] = "not connected"
            return issues
        stream = self.layout.stream
        try:
            await asyncio.wait_for(self.nc.jetstream().stream_info(stream), timeout=2)
        except Exception as exc:
            issues["stream"] = f"stream {stream!r} unavailable: {exc}"
        return issues
