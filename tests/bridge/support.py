"""Helpers for the bridge tests: settings and a namespaced layout, in-process and subprocess
workers, stream reading (waiting, Kafka helpers and names come from ``tests.support``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec
import nats
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings
from bridge.worker import BridgeWorker
from ofa_contract.layout import Layout
from ofa_contract.settings import CommonSettings, env_var
from tests.support.kafka import create_topics
from tests.support.names import layout_for


def bridge_settings(unique: str, **overrides: Any) -> BridgeSettings:
    """Settings with a test-unique consumer group and fast timings."""
    base: dict[str, Any] = {
        "consumer_group": f"bridge-{unique}",
        "metadata_refresh_ms": 500,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "commit_interval_ms": 100,
        "heartbeat_s": 0.5,
        "ops_port": 0,
        "worker_id": f"w-{unique}",
        "retry_backoff_max_s": 1.0,
    }
    base.update(overrides)
    return msgspec.convert(base, BridgeSettings)


def bridge_layout(unique: str) -> Layout:
    """Every Kafka and NATS name of the test under its own namespace."""
    return layout_for(unique)


class BridgeCase(NamedTuple):
    """What :func:`bridge_case` prepared for one test."""

    settings: BridgeSettings
    layout: Layout
    #: The derived topics of the groups asked for, in their order.
    topics: list[str]


async def bridge_case(
    kafka: str, unique: str, groups: Sequence[str], *, partitions: int, **overrides: Any
) -> BridgeCase:
    """The common arrange of a bridge test: its settings (:func:`bridge_settings` with
    ``overrides``) and namespaced layout, and the derived topics of ``groups`` created with
    ``partitions`` partitions."""
    layout = bridge_layout(unique)
    topics = [layout.group_topic(g) for g in groups]
    await create_topics(kafka, topics, partitions=partitions)
    return BridgeCase(bridge_settings(unique, **overrides), layout, topics)


def env_for(settings: BridgeSettings, layout: Layout, kafka: str, nats_url: str) -> dict[str, str]:
    """Environment for a `ofa-serving bridge` subprocess with these settings and layout."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "NATS_URL": nats_url,
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "OFA_NAMESPACE": layout.namespace,
    }
    for f in msgspec.structs.fields(BridgeSettings):
        env[env_var(BridgeSettings, f.name)] = str(getattr(settings, f.name))
    return env


class InProcessWorker:
    """A worker running as a task in the test's event loop."""

    def __init__(self, kafka: str, nats_url: str, settings: BridgeSettings, layout: Layout) -> None:
        self.metrics = BridgeMetrics()
        self.worker = BridgeWorker(
            CommonSettings(kafka_bootstrap_servers=kafka, nats_url=nats_url),
            layout,
            settings,
            self.metrics,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessWorker:
        self.task = asyncio.create_task(self.worker.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 60)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of one sample (0 when absent)."""
        v = self.metrics.registry.get_sample_value(name, labels or {})
        return float(v) if v is not None else 0.0


async def read_stream(nats_url: str, stream: str, subjects: str) -> list[Msg]:
    """All messages stored in ``stream`` (ordered consumer from the first sequence)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        total = info.state.messages
        out: list[Msg] = []
        if total == 0:
            return out
        sub = await js.subscribe(subjects, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            while len(out) < total:
                out.append(await sub.next_msg(timeout=10))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def stream_count(nats_url: str, stream: str) -> int:
    """Messages stored in ``stream`` (0 if it does not exist yet)."""
    nc = await nats.connect(nats_url)
    try:
        try:
            info = await nc.jetstream().stream_info(stream)
        except Exception:
            return 0
        return int(info.state.messages)
    finally:
        await nc.close()


async def stream_holds(nats_url: str, stream: str, n: int) -> bool:
    """True once ``stream`` stores at least ``n`` messages."""
    return await stream_count(nats_url, stream) >= n
