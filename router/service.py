"""The router's long-lived state: NATS connection, group index, registries, metrics.

Everything a request needs is already in memory (asset -> group from the changelog, live edges
from the registry); requests only touch NATS for `/asset_state`, which reads the KV bucket.

Start-up never blocks the HTTP listener: Kafka and NATS are awaited in the background with the
shared policy (:func:`ofa_contract.runtime.wait_for_service`: back-off, one log line naming the
variable, not ready on ``/ready`` meanwhile, prompt stop on SIGTERM).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from ofa_contract import __version__
from ofa_contract.asset_state import AssetStateReader, open_reader
from ofa_contract.auth import Authorizer, AuthSettings
from ofa_contract.layout import Layout
from ofa_contract.registry import BridgeEntry
from ofa_contract.runtime import cancel_and_wait, get_logger, wait_for_service
from ofa_contract.runtime.connect import connect_nats
from ofa_contract.runtime.metrics import MetricSet, counter, gauge, histogram
from ofa_contract.settings import CommonSettings
from router.edge_picker import EdgePicker
from router.group_index import GroupIndex
from router.kv_follow import KvFollower
from router.settings import RouterSettings

log = get_logger("router", __name__)
R = TypeVar("R")


class Metrics(MetricSet):
    """The router's Prometheus metrics (``ofa_router_*``), in a registry of its own."""

    component = "router"

    requests = counter(
        "requests", "HTTP requests answered, by route and status", ("route", "status")
    )
    redirects = counter("redirects", "Streams sent to an edge (307)", ("group",))
    proxied = counter("proxy_streams", "Streams proxied to an edge", ("group",))
    proxy_open = gauge("proxy_streams_open", "Proxied streams open now")
    proxy_bytes = counter("proxy_bytes", "SSE bytes passed through in proxy mode")
    edge_failures = counter(
        "edge_connect_failures",
        "Proxy connections to an edge that failed (the next edge was tried)",
    )
    no_edge = counter("no_edge", "Streams refused with 503 for lack of an edge")
    state_latency = histogram(
        "asset_state_seconds",
        "Time to answer /asset_state from the KV bucket",
        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    )
    edges_live = gauge("edges_live", "Live edges")
    assets_indexed = gauge("assets_indexed", "Assets in the group index")

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)


class RouterService:
    """Owns the connections; started and stopped by the HTTP app's lifespan."""

    def __init__(
        self,
        settings: RouterSettings,
        common: CommonSettings,
        layout: Layout | None = None,
        auth: AuthSettings | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.common = common
        self.layout = layout or Layout()
        self.auth_settings = auth or AuthSettings()
        self.auth = Authorizer.from_settings(self.auth_settings)
        self.metrics = Metrics(registry or CollectorRegistry())
        self.nc: NatsClient | None = None
        self.index = GroupIndex(
            common.kafka_bootstrap_servers, self.layout.changelog_topic, self.layout.groups_topic
        )
        self.index_started = False
        self.edges = EdgePicker(self._js, self.layout.edges_bucket, settings.edge_stale_s)
        self.bridges: KvFollower[BridgeEntry] = KvFollower(
            self._js, self.layout.bridges_bucket, BridgeEntry, settings.bridge_stale_s
        )
        self.metrics.edges_live.set_function(lambda: len(self.edges.live()))
        self.metrics.assets_indexed.set_function(lambda: len(self.index.assets()))
        #: What each dependency is being waited for (shown on /ready until it answers).
        self.waiting: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._state_reader: AssetStateReader | None = None
        self.http: httpx.AsyncClient | None = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle

    def _js(self) -> JetStreamContext:
        if self.nc is None or not self.nc.is_connected:
            raise RuntimeError("NATS not connected")
        return self.nc.jetstream()

    async def _start_index(self) -> bool:
        try:
            await self.index.start()
        except BaseException:
            await self.index.stop()  # closes the half-started consumer
            raise
        return True

    async def _wait_for(
        self, key: str, what: str, variable: str, probe: Callable[[], Awaitable[R]]
    ) -> R | None:
        """``probe`` until it answers (None when stopping first), showing on /ready under ``key``
        what is being waited for meanwhile."""
        self.waiting[key] = f"connecting to {what}"
        result = await wait_for_service(
            what,
            variable,
            probe,
            self._stopping,
            log,
            on_waiting=lambda why: self.waiting.__setitem__(key, why),
        )
        if result is not None:
            self.waiting.pop(key, None)
        return result

    async def _wait_kafka(self) -> None:
        servers = self.common.kafka_bootstrap_servers
        started = await self._wait_for(
            "kafka", f"Kafka at {servers}", "KAFKA_BOOTSTRAP_SERVERS", self._start_index
        )
        if started:
            self.index_started = True

    async def _wait_nats(self) -> None:
        url = self.common.nats_url
        nc = await self._wait_for(
            "nats", f"NATS at {url}", "NATS_URL", lambda: connect_nats(url, "ofa-router", log=log)
        )
        if nc is None:
            return  # stopping
        self.nc = nc
        log.info("connected to NATS", extra={"nats_url": url})
        self.edges.start()
        self.bridges.start()

    async def start(self) -> None:
        """Start the background work; returns at once, without waiting for Kafka or NATS."""
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._wait_kafka(), name="router-kafka"),
            asyncio.create_task(self._wait_nats(), name="router-nats"),
        ]
        s = self.settings
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=s.proxy_connect_timeout_s, read=None, write=10.0, pool=10.0
            ),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
            follow_redirects=False,
        )

    async def stop(self) -> None:
        """Stop waiting and following, close connections."""
        self._stopping.set()
        for task in self._tasks:
            await cancel_and_wait(task)
        await self.edges.stop()
        await self.bridges.stop()
        if self.index_started:
            await self.index.stop()
        if self.http is not None:
            await self.http.aclose()
        if self.nc is not None:
            try:
                await self.nc.drain()
            except Exception as exc:  # closing anyway; say why the drain was cut short
                log.info("NATS drain failed: %s", exc, extra={"error": str(exc)})
            self.nc = None

    # ------------------------------------------------------------------ helpers

    async def state_reader(self) -> AssetStateReader:
        """The asset_state reader; raises RuntimeError when NATS or the bucket is missing."""
        if self._state_reader is None:
            bucket = self.layout.state_bucket
            try:
                self._state_reader = await open_reader(self._js(), bucket)
            except Exception as exc:
                raise RuntimeError(f"KV bucket {bucket!r} unavailable: {exc}") from None
            if self._state_reader is None:
                raise RuntimeError(f"KV bucket {bucket!r} does not exist yet")
        return self._state_reader

    async def _kafka_issues(self) -> dict[str, str]:
        if not self.index_started:
            return {"kafka": self.waiting.get("kafka", "not connected")}
        try:
            await self.index.kafka_metadata(self.settings.ready_timeout_s)
        except Exception as exc:
            return {"kafka": f"metadata request failed: {type(exc).__name__}: {exc}"}
        return self.index.issues()

    async def _nats_issues(self) -> dict[str, str]:
        if self.nc is None or not self.nc.is_connected:
            return {"nats": self.waiting.get("nats", "not connected")}
        issues: dict[str, str] = {}
        timeout = self.settings.ready_timeout_s
        try:
            await self.nc.flush(timeout=max(1, int(timeout)))
        except Exception as exc:
            issues["nats"] = f"no answer: {type(exc).__name__}: {exc}"
        bucket = self.layout.state_bucket
        try:
            await self.state_reader()
            await asyncio.wait_for(self._js().stream_info(f"KV_{bucket}"), timeout)
        except Exception as exc:
            self._state_reader = None
            issues[f"kv_{bucket}"] = str(exc)
        return issues

    async def ready_issues(self) -> dict[str, str]:
        """Every dependency that does not answer right now (empty when ready)."""
        issues = await self._kafka_issues()
        issues.update(await self._nats_issues())
        issues.update(self.edges.registry.issues())
        if not self.edges.live():
            issues["edges"] = f"no live edge registered in {self.layout.edges_bucket!r}"
        return issues

    def info(self) -> dict[str, Any]:
        """What /info shows."""
        lay = self.layout
        return {
            "version": __version__,
            "service": "ofa-serving router",
            "mode": self.settings.mode,
            "auth": self.auth.enabled,
            "uptime_s": round(time.time() - self.started_at, 1),
            "kafka": self.common.kafka_bootstrap_servers,
            "nats": self.common.nats_url,
            "changelog_topic": lay.changelog_topic,
            "groups_topic": lay.groups_topic,
            "buckets": {
                "asset_state": lay.state_bucket,
                "edges": lay.edges_bucket,
                "bridges": lay.bridges_bucket,
            },
            "group_index": self.index.snapshot(),
            "edges_live": len(self.edges.live()),
        }
