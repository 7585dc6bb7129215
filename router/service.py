"""The router's long-lived state: NATS connection, group index, registries, metrics.

Everything a request needs is already in memory (asset -> group from the changelog, live edges
from the registry); requests only touch NATS for `/asset_state`, which reads the KV bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ofa_contract import __version__
from ofa_contract.settings import CommonSettings
from ofa_contract.streams import BridgeEntry
from router.asset_state import AssetStateReader
from router.auth import Authorizer
from router.edge_picker import EdgePicker
from router.group_index import GroupIndex
from router.kv_follow import KvFollower
from router.settings import RouterSettings

log = logging.getLogger(__name__)


class Metrics:
    """The router's Prometheus metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "ofa_router_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.redirects = Counter(
            "ofa_router_redirects", "Streams sent to an edge (307)", ["group"], registry=registry
        )
        self.proxied = Counter(
            "ofa_router_proxy_streams", "Streams proxied to an edge", ["group"], registry=registry
        )
        self.proxy_open = Gauge(
            "ofa_router_proxy_streams_open", "Proxied streams open now", registry=registry
        )
        self.proxy_bytes = Counter(
            "ofa_router_proxy_bytes", "SSE bytes passed through in proxy mode", registry=registry
        )
        self.edge_failures = Counter(
            "ofa_router_edge_connect_failures",
            "Proxy connections to an edge that failed (the next edge was tried)",
            registry=registry,
        )
        self.no_edge = Counter(
            "ofa_router_no_edge", "Streams refused with 503 for lack of an edge", registry=registry
        )
        self.state_latency = Histogram(
            "ofa_router_asset_state_seconds",
            "Time to answer /asset_state from the KV bucket",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.edges_live = Gauge("ofa_router_edges_live", "Live edges", registry=registry)
        self.assets_indexed = Gauge(
            "ofa_router_assets_indexed", "Assets in the group index", registry=registry
        )


class RouterService:
    """Owns the connections; started and stopped by the HTTP app's lifespan."""

    def __init__(
        self,
        settings: RouterSettings,
        common: CommonSettings,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.common = common
        self.metrics = Metrics(registry or CollectorRegistry())
        self.auth = Authorizer(
            secret=settings.jwt_secret,
            public_key=settings.jwt_public_key,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        self.nc: NatsClient | None = None
        self.index = GroupIndex(
            common.kafka_bootstrap_servers, settings.changelog_topic, settings.groups_topic
        )
        self.edges = EdgePicker(self._js, settings.edges_bucket, settings.edge_stale_s)
        self.bridges: KvFollower[BridgeEntry] = KvFollower(
            self._js, settings.bridges_bucket, BridgeEntry, settings.bridge_stale_s
        )
        self._state_kv: KeyValue | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self.http: httpx.AsyncClient | None = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle

    def _js(self) -> JetStreamContext:
        if self.nc is None or not self.nc.is_connected:
            raise RuntimeError("NATS not connected")
        return self.nc.jetstream()

    async def _connect_nats(self) -> None:
        """Connect to NATS, retrying until it answers (the router may start before NATS)."""
        while self.nc is None:
            try:
                self.nc = await nats.connect(
                    self.common.nats_url,
                    name="ofa-router",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    connect_timeout=3,
                )
                log.info("connected to NATS at %s", self.common.nats_url)
            except Exception as exc:
                log.warning("NATS not reachable yet (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        """Start the background followers; returns without waiting for dependencies."""
        await self.index.start()
        self._connect_task = asyncio.create_task(self._connect_nats(), name="nats-connect")
        self.edges.start()
        self.bridges.start()
        s = self.settings
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=s.proxy_connect_timeout_s, read=None, write=10.0, pool=10.0
            ),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
            follow_redirects=False,
        )

    async def stop(self) -> None:
        """Stop followers and close connections."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        await self.edges.stop()
        await self.bridges.stop()
        await self.index.stop()
        if self.http is not None:
            await self.http.aclose()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            self.nc = None

    # ------------------------------------------------------------------ helpers

    async def state_reader(self) -> AssetStateReader:
        """The asset_state reader; raises RuntimeError when NATS or the bucket is missing."""
        if self._state_kv is None:
            try:
                self._state_kv = await self._js().key_value(self.settings.asset_state_bucket)
            except Exception as exc:
                raise RuntimeError(
                    f"KV bucket {self.settings.asset_state_bucket!r} unavailable: {exc}"
                ) from None
        return AssetStateReader(self._state_kv)

    async def ready_issues(self) -> dict[str, str]:
        """Every dependency that does not answer right now (empty when ready)."""
        issues: dict[str, str] = {}
        timeout = self.settings.ready_timeout_s
        try:
            await self.index.kafka_metadata(timeout)
        except Exception as exc:
            issues["kafka"] = f"metadata request failed: {type(exc).__name__}: {exc}"
        issues.update(self.index.issues())
        if self.nc is None or not self.nc.is_connected:
            issues["nats"] = "not connected"
        else:
            try:
                await self.nc.flush(timeout=max(1, int(timeout)))
            except Exception as exc:
                issues["nats"] = f"no answer: {type(exc).__name__}: {exc}"
            try:
                await self.state_reader()
                await asyncio.wait_for(
                    self._js().stream_info(f"KV_{self.settings.asset_state_bucket}"), timeout
                )
            except Exception as exc:
                self._state_kv = None
                issues[f"kv_{self.settings.asset_state_bucket}"] = str(exc)
        issues.update(self.edges.registry.issues())
        if not self.edges.live():
            issues["edges"] = f"no live edge registered in {self.settings.edges_bucket!r}"
        return issues

    def info(self) -> dict[str, Any]:
        """What /info shows."""
        s = self.settings
        return {
            "version": __version__,
            "service": "ofa-serving router",
            "mode": s.mode,
            "auth": self.auth.enabled,
            "uptime_s": round(time.time() - self.started_at, 1),
            "kafka": self.common.kafka_bootstrap_servers,
            "nats": self.common.nats_url,
            "changelog_topic": s.changelog_topic,
            "groups_topic": s.groups_topic,
            "buckets": {
                "asset_state": s.asset_state_bucket,
                "edges": s.edges_bucket,
                "bridges": s.bridges_bucket,
            },
            "group_index": self.index.snapshot(),
            "edges_live": len(self.edges.live()),
        }

    def refresh_gauges(self) -> None:
        """Update gauges that mirror in-memory state (called before a scrape)."""
        self.metrics.edges_live.set(len(self.edges.live()))
        self.metrics.assets_indexed.set(len(self.index.assets()))
