"""One edge node's lifecycle: the NATS connection and its callbacks, the fan-out hub, the resume
planner, the registry heartbeat, and whether the node is ready.

NATS is connected in the background, never inside the server's start-up: while NATS is away the
node still answers ``/ready`` (503, saying what it waits for) and stops at once on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time

from nats.aio.client import Client as NatsClient

from edge.auth import Authorizer
from edge.fanout import Hub
from edge.limits import RateLimiter
from edge.metrics import EdgeMetrics
from edge.registry import Registration
from edge.resume import ResumePlanner
from edge.settings import EdgeSettings
from ofa_contract.settings import CommonSettings

log = logging.getLogger("ofa_serving.edge.node")

#: How long start-up waits for the first NATS attempt: with NATS up the node serves streams as
#: soon as it listens; with NATS away it listens anyway (and says so on /ready).
_FIRST_ATTEMPT_S = 5.0
#: Back-off between registration attempts (seconds), doubled up to the cap.
_RETRY_FIRST_S = 0.5
_RETRY_CAP_S = 30.0


class WaitReport:
    """What the node waits for: logged once, then again only at growing intervals, and shown
    on ``/ready`` meanwhile (a warning every reconnect attempt would flood the log)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self.last_error = ""
        self._since = 0.0
        self._next_log = 0.0

    def failed(self, exc: BaseException) -> None:
        """Count a failed attempt; log when the back-off says so."""
        now = time.monotonic()
        if self.failures == 0:
            self._since = self._next_log = now
        self.failures += 1
        self.last_error = str(exc) or type(exc).__name__
        if now >= self._next_log:
            waited = now - self._since
            if self.failures == 1:
                log.warning("%s: %s", self.what, self.last_error)
            else:
                log.warning(
                    "still %s after %.0f s (%d attempts): %s",
                    self.what,
                    waited,
                    self.failures,
                    self.last_error,
                )
            self._next_log = now + min(300.0, max(5.0, 2 * waited))

    def describe(self) -> str:
        """One line for ``/ready``."""
        if not self.failures:
            return self.what
        return f"{self.what}: {self.last_error} ({self.failures} attempts)"


class EdgeNode:
    """Everything one running edge holds (one per app, ``app.state.edge``)."""

    def __init__(self, settings: EdgeSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.metrics = EdgeMetrics()
        self.auth = Authorizer(
            secret=settings.jwt_secret,
            public_key=settings.jwt_public_key,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        self.limiter = RateLimiter(settings.max_new_connections_per_s)
        self.edge_id = settings.id or f"{socket.gethostname()}-{os.getpid()}"
        self.nc = NatsClient()
        self.hub: Hub | None = None
        self.planner: ResumePlanner | None = None
        self.registration: Registration | None = None
        #: Open SSE streams (the registry publishes it; admission compares it to the cap).
        self.streams = 0
        self.closing = False
        self._waiting: tuple[str, WaitReport] | None = None
        self._connector: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()

    @property
    def public_url(self) -> str:
        """URL published in the registry."""
        s = self.settings
        return s.public_url or f"http://{s.host}:{s.port}"

    @property
    def serving(self) -> bool:
        """Whether new streams can be served now (connected, not shutting down)."""
        return self.hub is not None and self.nc.is_connected and not self.closing

    async def start(self) -> None:
        """Start connecting in the background; return once the first attempt is decided."""
        self._connector = asyncio.get_running_loop().create_task(self._connect())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FIRST_ATTEMPT_S):
                await self._settled.wait()

    async def _connect(self) -> None:
        """Connect to NATS (nats-py retries for ever), then set up the hub and register."""
        s = self.settings
        report = WaitReport(f"waiting for NATS at {self.common.nats_url} (NATS_URL)")
        self._waiting = ("nats", report)
        try:
            await self.nc.connect(
                self.common.nats_url,
                name=f"ofa-edge-{self.edge_id}",
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnect,
                reconnected_cb=self._on_reconnect,
                max_reconnect_attempts=-1,
                # nats-py annotates an int but sleeps for it: half a second is fine.
                reconnect_time_wait=0.5,  # type: ignore[arg-type]
                pending_size=64 * 1024 * 1024,
            )
            self.hub = Hub(
                self.nc,
                stream=s.stream,
                stream_prefix=s.stream_subject_prefix,
                live_prefix=s.live_subject_prefix,
                metrics=self.metrics,
                history_timeout_s=s.history_timeout_s,
            )
            self.planner = ResumePlanner(self.nc, s.stream)
            await self._register()
            self._waiting = None
            log.info("edge %s serving at %s", self.edge_id, self.public_url)
            if s.gc_freeze:
                # Start-up objects (modules, app, routes) never die; moving them out of the
                # collector's generations keeps full collections short (the p99 tail).
                gc.collect()
                gc.freeze()
        finally:
            self._settled.set()

    async def _register(self) -> None:
        """Publish the registry entry, retrying with back-off (JetStream may be unavailable)."""
        s = self.settings
        self.registration = Registration(
            self.nc,
            bucket=s.edges_bucket,
            edge_id=self.edge_id,
            url=self.public_url,
            groups=list(s.groups),
            max_connections=s.max_connections,
            connections=lambda: self.streams,
            interval_s=s.heartbeat_s,
            ttl_s=s.registry_ttl_s,
        )
        report = WaitReport(f"waiting to register in KV bucket {s.edges_bucket!r}")
        self._waiting = ("registry", report)
        delay = _RETRY_FIRST_S
        while True:
            try:
                await self.registration.start()
                return
            except Exception as exc:
                report.failed(exc)
                self._settled.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_CAP_S)

    async def _on_error(self, exc: Exception) -> None:
        if self._waiting is not None and self._waiting[0] == "nats":
            # A failed (re)connect attempt of the first connection: say what we wait for.
            self._waiting[1].failed(exc)
            self._settled.set()
            return
        sub = getattr(exc, "sub", None)
        if sub is not None and self.hub is not None:
            feed = self.hub.feed_of_sid(sub._id)
            if feed is not None:
                log.warning("live subscription of %s dropped messages", feed.asset_uuid)
                self.hub.kill_feed(feed, "edge dropped live data; reconnect")
                return
        log.warning("NATS error: %s", exc)

    async def _on_disconnect(self) -> None:
        log.warning("NATS connection lost")

    async def _on_reconnect(self) -> None:
        # Live messages published while disconnected are gone from the live path: every
        # client resumes from its Last-Event-ID, which reads them from the stream.
        log.warning("NATS reconnected; closing live streams so clients resume")
        if self.hub is not None:
            self.hub.kill_all("edge lost its NATS connection; reconnect")

    def begin_shutdown(self) -> None:
        """Stop taking streams, stop waiting for NATS, and tell clients to reconnect (to
        another edge). Called from the signal handler: must return at once."""
        if self.closing:
            return
        self.closing = True
        if self._connector is not None and not self._connector.done():
            log.info("shutting down while connecting to NATS")
            self._connector.cancel()
        if self.hub is not None:
            log.info("shutting down: closing %d streams", len(self.hub.clients))
            self.hub.begin_shutdown("edge shutting down; reconnect")

    async def stop(self) -> None:
        """Deregister and close the NATS connection."""
        self.begin_shutdown()
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(BaseException):
                await self._connector
        if self.registration is not None:
            await self.registration.stop()
        with contextlib.suppress(Exception):
            await self.nc.close()

    async def ready_issues(self) -> dict[str, str]:
        """Issues preventing this node from serving (empty when ready)."""
        issues: dict[str, str] = {}
        if self.closing:
            issues["shutdown"] = "edge is shutting down"
        if self._waiting is not None:
            key, report = self._waiting
            issues[key] = report.describe()
            return issues
        if not self.nc.is_connected:
            issues["nats"] = "not connected"
            return issues
        try:
            await asyncio.wait_for(self.nc.jetstream().stream_info(self.settings.stream), timeout=2)
        except Exception as exc:
            issues["stream"] = f"stream {self.settings.stream!r} unavailable: {exc}"
        return issues
