"""Helpers for the splitter tests: per-test names, an in-process splitter, output readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from compose.simulator import Factory, simulate
from ofa_contract.layout import KafkaHeaders, Layout
from ofa_contract.settings import CommonSettings
from splitter.engine import Splitter
from splitter.grouping import load_strategy
from splitter.settings import SplitterSettings
from tests.support.kafka import consume_all, create_topics, list_topics
from tests.support.names import TestNames
from tests.support.procs import ComponentProcess
from tests.support.wait import wait_until

__all__ = ["list_topics"]


class Names(msgspec.Struct, frozen=True, kw_only=True):
    """Every Kafka name one test uses, unique to it (tests share the broker)."""

    names: TestNames
    input: str
    prefix: str
    groups: str
    changelog: str
    dlq: str
    uns: str
    group_id: str

    @property
    def layout(self) -> Layout:
        """The test's namespaced layout (all the topic names above come from it)."""
        return self.names.layout


def names(unique: str) -> Names:
    """Unique topic/group/transactional-id names for one test."""
    tn = TestNames.for_tag(unique)
    lay = tn.layout
    return Names(
        names=tn,
        input=lay.input_topic,
        prefix=lay.group_topic_prefix,
        groups=lay.groups_topic,
        changelog=lay.changelog_topic,
        dlq=lay.dlq_topic,
        uns=lay.uns_map_topic,
        group_id=tn.splitter_group,
    )


#: Settings every splitter of the tests runs with (small topics, fast failover).
TEST_SETTINGS: dict[str, Any] = {
    "topic_partitions": 2,
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "ops_port": 0,
}


def settings_for(n: Names, **overrides: Any) -> SplitterSettings:
    """Splitter settings for the test's names."""
    base: dict[str, Any] = {
        "group_id": n.names.splitter_group,
        "transactional_id_prefix": n.names.transactional_id_prefix,
        **TEST_SETTINGS,
    }
    base.update(overrides)
    return SplitterSettings(**base)


def splitter_process(
    bootstrap: str, n: Names, log_dir: Path, name: str, ops_port: int, **extra: str
) -> ComponentProcess:
    """A `ofa-serving split` subprocess for the test's names (not started)."""
    env = {
        **n.names.env(),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        **{f"SPLIT_{k.upper()}": str(v) for k, v in TEST_SETTINGS.items()},
        "SPLIT_OPS_PORT": str(ops_port),
        **extra,
    }
    return ComponentProcess(
        ["split"], env, log_dir, name=name, ops_url=f"http://127.0.0.1:{ops_port}"
    )


def rec(r: object) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A simulator Record as a (key, value, headers) tuple for helpers.produce."""
    return r.key.encode(), r.value, list(r.headers)  # type: ignore[attr-defined]


async def make_input(bootstrap: str, n: Names, partitions: int = 3) -> None:
    """Create the test's input topic (large records allowed, for the too_large sample)."""
    await create_topics(
        bootstrap, [n.input], partitions=partitions, config={"max.message.bytes": "4194304"}
    )


@contextlib.asynccontextmanager
async def running_splitter(
    bootstrap: str, n: Names, settings: SplitterSettings | None = None
) -> AsyncIterator[Splitter]:
    """A splitter running in this event loop; stopped gracefully on exit."""
    s = settings or settings_for(n)
    common = CommonSettings(kafka_bootstrap_servers=bootstrap)
    strategy = load_strategy(s.grouping, s.grouping_config(n.layout.uns_map_topic))
    splitter = Splitter(common, s, strategy, CollectorRegistry(), n.layout)
    stop = asyncio.Event()
    await splitter.start()
    task = asyncio.create_task(splitter.run(stop))
    try:

        async def ready() -> bool:
            assert not task.done(), task
            return not await splitter.ready_issues()

        await wait_until(ready, timeout=60, what="splitter ready")
        yield splitter
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await splitter.close()


async def read_outputs(bootstrap: str, n: Names) -> list[Any]:
    """Every committed record of every derived topic of the test."""
    derived = await list_topics(bootstrap, n.prefix)
    if not derived:
        return []
    return await consume_all(bootstrap, derived, timeout=30)


async def committed_offsets(bootstrap: str, group_id: str) -> dict[TopicPartition, int]:
    """The committed offsets of a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group_id)
        return {tp: om.offset for tp, om in got.items()}
    finally:
        await admin.close()


async def input_ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """End offsets of the input topic."""
    return await end_offsets(bootstrap, [topic])


async def end_offsets(
    bootstrap: str, topics: list[str], *, read_committed: bool = False
) -> dict[TopicPartition, int]:
    """End offsets of every partition of ``topics`` (last stable offsets if ``read_committed``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        descs = await admin.describe_topics(topics)
    finally:
        await admin.close()
    parts = [TopicPartition(d["topic"], p["partition"]) for d in descs for p in d["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def wait_caught_up(bootstrap: str, n: Names, timeout: float = 60) -> None:
    """Wait until the splitter group has committed the whole input."""
    ends = await input_ends(bootstrap, n.input)

    async def done() -> bool:
        got = await committed_offsets(bootstrap, n.group_id)
        return all(got.get(tp, -1) >= end for tp, end in ends.items() if end > 0)

    await wait_until(done, timeout=timeout, what=f"splitter caught up with {ends}")
    # Offsets committed inside a transaction show before every output partition has its commit
    # marker; until then read_committed readers stop at the older last stable offset.
    await wait_until(
        lambda: transactions_settled(bootstrap, n.prefix),
        timeout=timeout,
        what="the derived topics' transactions settled",
    )


async def transactions_settled(bootstrap: str, prefix: str) -> bool:
    """No derived topic has an open transaction: its last stable offset is its end offset."""
    topics = await list_topics(bootstrap, prefix)
    if not topics:
        return True
    stable = await end_offsets(bootstrap, topics, read_committed=True)
    return stable == await end_offsets(bootstrap, topics)


def header(rec: Any, name: str) -> bytes | None:
    """The first header ``name`` of a consumer record."""
    for k, v in rec.headers:
        if k == name:
            return bytes(v)
    return None


def by_topic(recs: list[Any]) -> dict[str, list[Any]]:
    """Records grouped by topic."""
    out: dict[str, list[Any]] = defaultdict(list)
    for r in recs:
        out[r.topic].append(r)
    return out


def seq_of(rec: Any) -> int:
    """The simulator's per-asset sequence number of a record."""
    return int(msgspec.json.decode(rec.value)["attributes"]["seq"])


def src_coord(rec: Any) -> tuple[int, int]:
    """(partition, offset) of the input record a derived record came from."""
    p = header(rec, KafkaHeaders.SRC_PARTITION)
    o = header(rec, KafkaHeaders.SRC_OFFSET)
    assert p is not None and o is not None, f"derived record without source headers: {rec}"
    return int(p), int(o)


async def read_input(bootstrap: str, topic: str) -> list[Any]:
    """Every record of the (non-transactional) input topic."""
    return await consume_all(bootstrap, [topic], read_committed=False, timeout=30)


async def produce_to(
    bootstrap: str, topic: str, records: list[tuple[str, bytes | None, int | None]]
) -> None:
    """Produce (key, value, partition) records in order; partition None = the default
    partitioner (murmur2), a number = that partition, as a CRC32-partitioning producer does."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value, partition in records:
            await producer.send_and_wait(topic, value, key=key.encode(), partition=partition)
    finally:
        await producer.stop()


def uns_value(asset: str, workcenter: str | None) -> bytes:
    """The UNS map value OpenFactory writes at registration, or at deregistration (None)."""
    if workcenter is None:
        return msgspec.json.encode({"asset_uuid": asset, "uns_id": None, "uns_levels": None})
    levels = {"inc": "Acme", "area": "North", "workcenter": workcenter, "asset": asset}
    return msgspec.json.encode(
        {"ASSET_UUID": asset, "UNS_ID": f"Acme/North/{workcenter}/{asset}", "UNS_LEVELS": levels}
    )


class Seeded(msgspec.Struct, frozen=True, kw_only=True):
    """A test's names and its input topic, holding ``written`` events of ``factory``."""

    n: Names
    factory: Factory
    written: int


async def seeded_input(
    bootstrap: str,
    unique: str,
    factory: Factory,
    *,
    count: int,
    rate: float = 5000,
) -> Seeded:
    """The common arrange of the splitter tests: the test's names, its input topic, and
    ``count`` events of ``factory`` written to it."""
    n = names(unique)
    await make_input(bootstrap, n)
    written = await simulate(factory, bootstrap, n.input, rate=rate, count=count)
    return Seeded(n=n, factory=factory, written=written)
