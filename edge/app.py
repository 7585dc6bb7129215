"""The edge's Litestar application: SSE routes, health, readiness and metrics.

SSE bodies are a Litestar ``Stream`` over an async generator of pre-built bytes: live frames are
encoded once per event by the feed (not one ``ServerSentEvent`` object per client, which costs
about 2.5x the CPU), and everything queued for a client leaves in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import nats
from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.response import Stream
from nats.aio.client import Client as NatsClient
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge import sse
from edge.auth import AuthError, Authorizer
from edge.fanout import AssetFeed, Client, Hub
from edge.limits import RateLimiter
from edge.metrics import EdgeMetrics
from edge.openapi import openapi_document
from edge.registry import Registration
from edge.resume import HistoryError, ResumePlanner, replay
from edge.settings import EdgeSettings
from edge.snapshot import asset_state
from ofa_contract import __version__
from ofa_contract.naming import encode_token
from ofa_contract.settings import CommonSettings

log = logging.getLogger("edge")

#: History frames are sent in chunks of about this size (fewer socket writes).
_REPLAY_CHUNK = 64 * 1024
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
#: Key under which :class:`TransportCapture` leaves uvicorn's transport in the ASGI scope.
TRANSPORT_KEY = "ofa.transport"
#: Key under which it leaves uvicorn's request cycle (for :class:`edge.sse.DirectWriter`).
CYCLE_KEY = "ofa.cycle"
#: Longest encoded asset uuid plus data item id accepted. Both end up in NATS subjects, and a
#: protocol line longer than the server's max_control_line (4096 by default) makes nats-server
#: close the edge's connection: one such request would cut every client of the node.
MAX_SUBJECT_TOKENS_CHARS = 1024


class EdgeState:
    """Everything one running edge holds (one per app)."""

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
        self.nc: NatsClient | None = None
        self.hub: Hub | None = None
        self.planner: ResumePlanner | None = None
        self.registration: Registration | None = None
        self.streams = 0
        self.started_at = time.time()

    @property
    def public_url(self) -> str:
        """URL published in the registry."""
        s = self.settings
        return s.public_url or f"http://{s.host}:{s.port}"

    async def start(self) -> None:
        """Connect to NATS, register, freeze start-up garbage."""
        s = self.settings

        async def on_error(exc: Exception) -> None:
            sub = getattr(exc, "sub", None)
            if sub is not None and self.hub is not None:
                feed = self.hub.feed_of_sid(sub._id)
                if feed is not None:
                    log.warning("live subscription of %s dropped messages", feed.asset_uuid)
                    self.hub.kill_feed(feed, "edge dropped live data; reconnect")
                    return
            log.warning("NATS error: %s", exc)

        async def on_disconnect() -> None:
            log.warning("NATS connection lost")

        async def on_reconnect() -> None:
            # Live messages published while disconnected are gone from the live path: every
            # client resumes from its Last-Event-ID, which reads them from the stream.
            log.warning("NATS reconnected; closing live streams so clients resume")
            if self.hub is not None:
                self.hub.kill_all("edge lost its NATS connection; reconnect")

        self.nc = await nats.connect(
            self.common.nats_url,
            name=f"ofa-edge-{self.edge_id}",
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
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
        await self.registration.start()
        log.info("edge %s serving at %s", self.edge_id, self.public_url)
        if s.gc_freeze:
            # Start-up objects (modules, app, routes) never die; moving them out of the
            # collector's generations keeps full collections short (the p99 tail).
            gc.collect()
            gc.freeze()

    def begin_shutdown(self) -> None:
        """Stop taking streams and tell clients to reconnect (to another edge)."""
        if self.hub is not None and not self.hub.closing:
            log.info("shutting down: closing %d streams", len(self.hub.clients))
            self.hub.begin_shutdown("edge shutting down; reconnect")

    async def stop(self) -> None:
        """Deregister and close the NATS connection."""
        self.begin_shutdown()
        if self.registration is not None:
            await self.registration.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def readiness(self) -> dict[str, str]:
        """Issues preventing this node from serving (empty when ready)."""
        issues: dict[str, str] = {}
        if self.hub is not None and self.hub.closing:
            issues["shutdown"] = "edge is shutting down"
        if self.nc is None or not self.nc.is_connected:
            issues["nats"] = "not connected"
            return issues
        try:
            await asyncio.wait_for(
                self.nc.jetstream()._jsm.stream_info(self.settings.stream), timeout=2
            )
        except Exception as exc:
            issues["stream"] = f"stream {self.settings.stream!r} unavailable: {exc}"
        return issues


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        content=body, status_code=status, headers=headers, media_type="application/json"
    )


def _token(request: Request[Any, Any, Any], cookie: str) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.query_params.get("token") or request.cookies.get(cookie)


def _parse_last_id(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 19:
        raise ValueError(raw)
    return int(raw)


class _Schedule:
    """Drops the socket of a client that does not finish within the grace period after it was
    told to close (a client that stopped reading would otherwise hold its connection)."""

    def __init__(self, transport: Any, grace: float) -> None:
        self.transport = transport
        self.grace = grace
        self.done = False
        self.handle: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self.handle is None and self.transport is not None:
            self.handle = asyncio.get_running_loop().call_later(self.grace, self._fire)

    def _fire(self) -> None:
        if not self.done:
            with contextlib.suppress(Exception):
                self.transport.abort()

    def disarm(self) -> None:
        self.done = True
        if self.handle is not None:
            self.handle.cancel()


async def _stream_body(
    st: EdgeState,
    asset_uuid: str,
    item_id: str | None,
    last_id: int | None,
    snapshot: bool,
    transport: Any,
    cycle: Any = None,
) -> AsyncIterator[bytes]:
    s = st.settings
    hub = st.hub
    nc = st.nc
    assert hub is not None and nc is not None
    metrics = st.metrics
    watchdog = _Schedule(transport, s.close_grace_s)

    def on_cut() -> None:
        metrics.slow_cuts.inc()
        watchdog.arm()

    client = Client(encode_token(item_id) if item_id else None, s.client_queue_bytes, on_cut)
    feed: AssetFeed | None = None
    st.streams += 1
    try:
        try:
            feed = await hub.acquire(asset_uuid)
        except Exception as exc:
            yield sse.comment(f"edge cannot subscribe to the asset: {exc}; reconnect")
            return
        hub.attach(feed, client)
        # Sent once the live subscription is confirmed: every event stored after the client
        # saw this line reaches it.
        yield sse.retry_frame(s.retry_ms)
        if snapshot:
            yield sse.named_frame(
                "asset_state", await asset_state(nc, s.state_bucket, asset_uuid, item_id)
            )
        last_replayed = 0
        if last_id is not None:
            metrics.resumes.inc()
            filt = feed.stream_filter(client.item_token)
            assert st.planner is not None
            try:
                start, reset = await st.planner.plan(filt, last_id)
            except Exception as exc:  # NATS timeout or error: the client retries later
                raise HistoryError(f"cannot read the stream state: {exc}") from exc
            if reset is not None:
                metrics.resets.labels(reset.reason).inc()
                yield sse.named_frame("reset", msgspec.json.encode(reset))
            if start is not None:
                last_replayed = start - 1
                chunk: list[bytes] = []
                size = 0
                async for m in replay(nc, s.stream, filt, start, timeout=s.history_timeout_s):
                    chunk.append(sse.event_frame(m.seq, m.data))
                    size += len(chunk[-1])
                    last_replayed = m.seq
                    metrics.history_events.inc()
                    if size >= _REPLAY_CHUNK:
                        yield b"".join(chunk)
                        chunk, size = [], 0
                        if client.closed is not None:
                            break
                if chunk:
                    yield b"".join(chunk)
        client.end_replay(last_replayed)
        # Response started (retry: went out), so uvicorn's framing is known from here on.
        client.writer = sse.DirectWriter.of(cycle)
        ping = s.ping_interval_s
        observe = metrics.lag.observe
        while True:
            if client.queue:
                queued_at = client.queued_at
                data = client.take()
                yield data
                observe(time.monotonic() - queued_at)
                continue
            if client.closed is not None:
                yield sse.comment(client.closed)
                return
            client.wakeup.clear()
            client.parked = True  # nothing queued, nothing in flight: live frames go direct
            try:
                async with asyncio.timeout(ping):
                    await client.wakeup.wait()
            except TimeoutError:
                client.parked = False
                yield sse.comment("ping")
            finally:
                client.parked = False
    except HistoryError as exc:
        log.warning("history replay failed for %s: %s", asset_uuid, exc)
        yield sse.comment(f"history unavailable ({exc}); reconnect")
    finally:
        watchdog.disarm()
        st.streams -= 1
        if feed is not None:
            hub.release(feed, client)


def create_app(settings: EdgeSettings, common: CommonSettings) -> Litestar:
    """The Litestar app of one edge node (``app.state.edge`` holds its :class:`EdgeState`)."""
    st = EdgeState(settings, common)

    def refuse(status: int, reason: str, detail: str) -> Response[Any]:
        st.metrics.rejected.labels(reason).inc()
        headers = {"Retry-After": str(settings.retry_after_s)} if status == 503 else None
        return _json(status, {"detail": detail}, headers)

    async def open_stream(request: Request[Any, Any, Any], group: str | None) -> Response[Any]:
        header_bytes = sum(len(k) + len(v) for k, v in request.scope["headers"])
        if header_bytes > settings.max_header_bytes:
            return refuse(
                431,
                "headers_too_large",
                f"request headers are {header_bytes} bytes; this edge accepts at most "
                f"{settings.max_header_bytes}",
            )
        q = request.query_params
        asset_uuid = q.get("asset_uuid")
        if not asset_uuid:
            return refuse(400, "bad_request", "query parameter asset_uuid is required")
        item_id = q.get("id") or None
        if len(encode_token(asset_uuid)) + len(encode_token(item_id or "-")) > (
            MAX_SUBJECT_TOKENS_CHARS
        ):
            return refuse(
                400,
                "bad_request",
                "asset_uuid and id are too long for a NATS subject "
                f"(at most {MAX_SUBJECT_TOKENS_CHARS} characters once encoded)",
            )
        snapshot = (q.get("snapshot") or "").lower() in ("1", "true", "yes")
        try:
            last_id = _parse_last_id(request)
        except ValueError as exc:
            return refuse(
                400,
                "bad_request",
                f"Last-Event-ID {str(exc)[:40]!r} is not an event id of this service "
                "(a non-negative integer); reconnect without it to start fresh",
            )
        try:
            st.auth.check(_token(request, settings.token_cookie), asset_uuid, group)
        except AuthError as exc:
            return refuse(
                exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.detail
            )
        if st.hub is None or st.nc is None or st.hub.closing:
            return refuse(503, "closing", "edge is shutting down; connect to another edge")
        if not st.nc.is_connected:
            return refuse(503, "nats_down", "edge has no NATS connection; try another edge")
        if st.streams >= settings.max_connections:
            return refuse(
                503, "full", f"edge is at its limit of {settings.max_connections} streams"
            )
        if not st.limiter.allow():
            return refuse(503, "rate", "edge is accepting new streams too fast; retry shortly")
        body = _stream_body(
            st,
            asset_uuid,
            item_id,
            last_id,
            snapshot,
            request.scope.get(TRANSPORT_KEY),  # type: ignore[call-overload]
            request.scope.get(CYCLE_KEY),  # type: ignore[call-overload]
        )
        return Stream(body, media_type="text/event-stream", headers=SSE_HEADERS)

    @get("/asset_stream")
    async def asset_stream(request: Request[Any, Any, Any]) -> Response[Any]:
        """SSE stream of one asset (or one data item with ``id=``)."""
        return await open_stream(request, None)

    @get("/group/{group:str}/asset_stream")
    async def group_asset_stream(request: Request[Any, Any, Any]) -> Response[Any]:
        """SSE stream of one asset of ``group`` (the group is used for authorisation)."""
        return await open_stream(request, str(request.path_params["group"]))

    @get("/health")
    async def health() -> Response[Any]:
        """Liveness."""
        return _json(200, {"status": "ok"})

    @get("/ready")
    async def ready() -> Response[Any]:
        """Ready when NATS answers and the stream exists (and not shutting down)."""
        issues = await st.readiness()
        if issues:
            return _json(503, {"status": "not ready", "issues": issues})
        return _json(200, {"status": "ready"})

    @get("/metrics")
    async def metrics() -> Response[bytes]:
        """Prometheus metrics."""
        return Response(
            content=generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    @get("/info")
    async def info() -> Response[Any]:
        """Identity and load of this node."""
        return _json(
            200,
            {
                "service": "ofa-edge",
                "id": st.edge_id,
                "url": st.public_url,
                "groups": list(settings.groups),
                "connections": st.streams,
                "asset_subscriptions": len(st.hub.feeds) if st.hub else 0,
                "stream": settings.stream,
            },
        )

    @get("/schema/openapi.json")
    async def openapi() -> Response[Any]:
        """The OpenAPI document of this interface."""
        return _json(200, openapi_document(__version__))

    cors = (
        CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET"],
            allow_headers=["Authorization", "Last-Event-ID"],
            allow_credentials=True,
        )
        if settings.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=[asset_stream, group_asset_stream, health, ready, metrics, info, openapi],
        on_startup=[st.start],
        on_shutdown=[st.stop],
        cors_config=cors,
        openapi_config=None,
        logging_config=None,
    )
    app.state.edge = st
    return app


class TransportCapture:
    """ASGI wrapper that leaves uvicorn's transport in the scope, so the edge can drop the
    socket of a client that stopped reading (closing it politely would wait for the client)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            cycle = getattr(send, "__self__", None)
            scope[TRANSPORT_KEY] = getattr(cycle, "transport", None)
            scope[CYCLE_KEY] = cycle
        await self.app(scope, receive, send)
