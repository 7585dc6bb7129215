"""Run the router in-process against real Kafka and a private nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import nats
import uvicorn
from nats.js.api import KeyValueConfig

from compose.local_infra import free_port
from ofa_contract.auth import AuthSettings
from ofa_contract.layout import Layout
from ofa_contract.registry import EdgeEntry
from ofa_contract.settings import CommonSettings
from ofa_contract.topics import AssetGroup, GroupAnnouncement
from router.main import build_servers, serve_router
from router.service import RouterService
from router.settings import RouterSettings
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.support.kafka import create_topics, produce
from tests.support.names import layout_for
from tests.support.wait import wait_until


class Stack:
    """Topics, buckets and a running router; helpers write data in the contract formats."""

    def __init__(self, kafka: str, nats_url: str, unique: str) -> None:
        self.kafka = kafka
        self.nats_url = nats_url
        # Kafka is shared by the tests: namespaced topics. NATS is a private server per test,
        # so the stream and buckets keep the standard names the real edge and publisher use.
        names = layout_for(unique)
        self.layout = Layout(
            changelog_topic=names.changelog_topic,
            groups_topic=names.groups_topic,
            group_topic_prefix=names.group_topic_prefix,
        )
        self.changelog = self.layout.changelog_topic
        self.groups_topic = self.layout.groups_topic
        self.nc: Any = None
        self.js: Any = None
        self.kv_state: Any = None
        self.kv_edges: Any = None
        self.kv_bridges: Any = None
        self.service: RouterService | None = None
        self.servers: list[uvicorn.Server] = []
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[int] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def setup_data(self, *, topics: bool = True, buckets: bool = True) -> None:
        self.nc = await nats.connect(self.nats_url)
        self.js = self.nc.jetstream()
        if topics:
            await self.create_topics()
        if buckets:
            await self.create_buckets()

    async def create_topics(self) -> None:
        await create_topics(
            self.kafka, [self.changelog, self.groups_topic], 2, {"cleanup.policy": "compact"}
        )

    async def create_buckets(self) -> None:
        lay = self.layout
        self.kv_state = await self.js.create_key_value(KeyValueConfig(bucket=lay.state_bucket))
        self.kv_edges = await self.js.create_key_value(KeyValueConfig(bucket=lay.edges_bucket))
        self.kv_bridges = await self.js.create_key_value(KeyValueConfig(bucket=lay.bridges_bucket))

    def settings(self, **overrides: Any) -> RouterSettings:
        base: dict[str, Any] = {"edge_stale_s": 30.0, "shutdown_grace_s": 1.0}
        base.update(overrides)
        return RouterSettings(**base)

    async def start_router(self, *, auth: AuthSettings | None = None, **overrides: Any) -> None:
        """Run the router in-process the way ``ofa-serving router`` does (both listeners)."""
        self.port = free_port()
        # A test may point the router at other topics by setting these two attributes.
        self.layout = msgspec.structs.replace(
            self.layout, changelog_topic=self.changelog, groups_topic=self.groups_topic
        )
        common = CommonSettings(kafka_bootstrap_servers=self.kafka, nats_url=self.nats_url)
        settings = self.settings(port=self.port, **overrides)
        self.service = RouterService(settings, common, self.layout, auth)
        self.servers = build_servers(self.service, "127.0.0.1", self.port)
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(serve_router(self.servers, stop=self.stop_event))
        await wait_until(self._started, timeout=20, what="router to listen")

    async def start_for(self, asset: str, group: str, edges: int = 1, **overrides: Any) -> None:
        """Put ``asset`` in ``group``, start the router and wait until it knows the asset's group
        and ``edges`` live edges (registered by the caller)."""
        await self.set_group(asset, group)
        await self.start_router(**overrides)
        await self.wait_group(asset, group)
        await self.wait_edges(edges)

    async def _started(self) -> bool:
        assert self.task is not None
        if self.task.done():
            raise AssertionError(f"router exited during start-up with {self.task.result()}")
        return all(s.started for s in self.servers)

    async def stop(self) -> None:
        if self.task is not None:
            self.stop_event.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 15)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    # ---------------------------------------------------------------- contract-format writers

    async def set_group(self, asset: str, group: str | None) -> None:
        value = (
            None if group is None else msgspec.json.encode(AssetGroup(group=group, updated_ms=1))
        )
        await produce(self.kafka, self.changelog, [(asset.encode(), value, [])])

    async def announce(self, group: str, topic: str, partitions: int = 3) -> None:
        ann = GroupAnnouncement(group=group, topic=topic, partitions=partitions, created_ms=1)
        await produce(
            self.kafka, self.groups_topic, [(group.encode(), msgspec.json.encode(ann), [])]
        )

    async def register_edge(
        self, edge_id: str, url: str, groups: list[str] | None = None, connections: int = 0
    ) -> None:
        entry = EdgeEntry(
            id=edge_id,
            url=url,
            groups=groups or ["*"],
            connections=connections,
            updated_ms=int(time.time() * 1000),
        )
        await self.kv_edges.put(edge_id, msgspec.json.encode(entry))

    async def put_state(self, asset: str, value: dict[str, Any]) -> None:
        item = value.get("ID", value.get("id"))
        await self.kv_state.put(Layout.state_key(asset, item), msgspec.json.encode(value))

    async def wait_group(self, asset: str, group: str | None) -> None:
        assert self.service is not None
        await self.service.index.wait_for(asset, group, 20)

    async def wait_edges(self, n: int) -> None:
        svc = self.service
        assert svc is not None

        async def enough() -> bool:
            return len(svc.edges.live()) >= n

        await wait_until(enough, timeout=15, what=f"{n} live edges")


@contextlib.asynccontextmanager
async def client(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        yield c


@contextlib.asynccontextmanager
async def real_edge_stack(
    kafka: str,
    nats_url: str,
    unique: str,
    asset: str,
    group: str,
    edge: dict[str, Any] | None = None,
    **router: Any,
) -> AsyncIterator[tuple[Stack, Publisher]]:
    """The router (settings ``router``) in front of a real edge (settings ``edge``) on a real
    JetStream stream, with ``asset`` in ``group``; yields the stack and a stream publisher."""
    stack = Stack(kafka, nats_url, unique)
    await stack.setup_data(buckets=False)
    pub = await Publisher.connect(nats_url)
    try:
        async with running_edge(nats_url, id=f"edge-{unique}", **(edge or {})):
            await stack.set_group(asset, group)
            await stack.start_router(**router)
            await stack.wait_group(asset, group)
            await stack.wait_edges(1)
            yield stack, pub
    finally:
        await stack.stop()
        await pub.close()
