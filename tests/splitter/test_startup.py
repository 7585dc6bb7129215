"""The start-up stall of issue 13: a group topic created mid-flow must be written at once, and a
fresh stack must serve data soon after the splitter says it is ready.

The stall came from aiokafka's metadata handling: a producer that has sent to a topic it saw in
an all-topics metadata fetch without tracking it loses that topic's metadata on the next refresh
(a NotLeaderForPartition retry forces one), and the batch then waits for a leader until it
expires, past the transaction timeout. The splitter now tracks every topic it writes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from compose import local_infra
from compose.simulator import Factory, openfactory_record, simulate
from splitter.engine import Splitter
from tests.helpers import Endpoints
from tests.splitter.support import (
    Names,
    list_topics,
    make_input,
    names,
    read_outputs,
    rec,
    running_splitter,
    seeded_input,
    src_coord,
    wait_caught_up,
)
from tests.support.kafka import produce


async def _refresh_and_check(splitter: Splitter, topics: list[str]) -> None:
    """Force a metadata refresh on every partition producer, then check that each still knows
    a leader for every partition of every topic it wrote to (the refresh is what dropped
    untracked topics before the fix)."""
    for part in splitter._parts.values():
        client = part.producer.client
        await client.force_metadata_update()
        for topic in topics:
            if topic not in part.tracked:
                continue
            known = client.cluster.partitions_for_topic(topic)
            assert known, f"producer of partition {part.number} lost the metadata of {topic}"
            for p in known:
                leader = client.cluster.leader_for_partition(TopicPartition(topic, p))
                assert leader not in (None, -1), (part.number, topic, p, leader)


async def test_group_topic_created_mid_flow_is_written_and_stays_known(
    infra: Endpoints, unique: str
) -> None:
    factory = Factory(6, 2, prefix=f"T{unique}", helpers=False)
    n = (await seeded_input(infra.kafka, unique, factory, count=30)).n
    async with running_splitter(infra.kafka, n) as splitter:
        await wait_caught_up(infra.kafka, n)
        # Every producer wrote to the internal topics and some group topics; a forced refresh
        # must not make it forget any of them.
        first = sorted({n.layout.group_topic(g) for g in factory.workcenter.values()})
        internal = [n.changelog, n.groups, n.dlq]
        await _refresh_and_check(splitter, first + internal)
        # A new group mid-flow: its topic is created and written while others are in use.
        moved = factory.assets[:3]
        later = [rec(factory.move(a, "Line 9")) for a in moved]
        later += [rec(factory.event()) for _ in range(40)]
        await produce(infra.kafka, n.input, later)
        await wait_caught_up(infra.kafka, n)
        new_topic = n.layout.group_topic("Line 9")
        assert new_topic in await list_topics(infra.kafka, n.prefix)
        await _refresh_and_check(splitter, [*first, new_topic, *internal])
        # After the refresh every producer still writes to every topic without stalling.
        tail = [
            rec(openfactory_record(a, factory._next(a), "Zact", i, "Position", "Samples"))
            for i in range(5)
            for a in factory.assets
        ]
        await produce(infra.kafka, n.input, tail)
        await wait_caught_up(infra.kafka, n)
        assert not await splitter.ready_issues()
    out = await read_outputs(infra.kafka, n)
    # Every input record exactly once (no replay after the start-up rebalance either).
    assert len({src_coord(r) for r in out}) == len(out) == sum(factory.seq.values())
    on_new = [r for r in out if r.topic == new_topic]
    # The move records and every later record of the moved assets went to the new topic.
    assert {r.key for r in on_new} == {a.encode() for a in moved}
    assert len(on_new) >= len(moved) * 6


@contextlib.asynccontextmanager
async def _fresh_kafka(work: str) -> AsyncIterator[str]:
    kafka = local_infra.KafkaProcess(local_infra.private_config(work))
    await asyncio.to_thread(kafka.start)
    try:
        await kafka.wait_ready()
        yield kafka.bootstrap
    finally:
        await asyncio.to_thread(local_infra.stop_pid, kafka.pid, 60)


async def _first_record(bootstrap: str, n: Names, stop: asyncio.Event) -> None:
    """Return when a committed record appears on any derived topic of ``n``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=300,
    )
    await consumer.start()
    try:
        consumer.subscribe(pattern=f"^{n.prefix}.*")
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=200)
            if any(got.values()):
                return
    finally:
        await consumer.stop()


async def _one_fresh_start(work: str, unique: str) -> float:
    """Fresh Kafka, fresh splitter, then a simulator: seconds from /ready to the first
    committed derived record (the criterion of issue 13)."""
    n = names(unique)
    async with _fresh_kafka(work) as bootstrap:
        await make_input(bootstrap, n, partitions=6)
        async with running_splitter(bootstrap, n):
            ready = time.monotonic()
            stop = asyncio.Event()
            sim = asyncio.create_task(
                simulate(Factory(4, 2), bootstrap, n.input, rate=20, duration=60, stop=stop)
            )
            try:
                await asyncio.wait_for(_first_record(bootstrap, n, stop), 60)
                return time.monotonic() - ready
            finally:
                stop.set()
                await sim


@pytest.mark.slow
@pytest.mark.timeout(2400)
async def test_twenty_fresh_starts_serve_data_soon_after_ready(
    tmp_path_factory: pytest.TempPathFactory, unique: str
) -> None:
    # The issue states its criterion with a bound (data within 15 s of /ready in 20 of 20
    # fresh starts); before the fix 13 of 15 starts served nothing for 41-44 s.
    times = []
    for i in range(20):
        work = str(tmp_path_factory.mktemp(f"fresh{i}"))
        times.append(await _one_fresh_start(work, f"{unique}{i}"))
        print(f"fresh start {i}: first data {times[-1]:.2f}s after ready", flush=True)
    print(f"worst {max(times):.2f}s, all {sorted(round(t, 2) for t in times)}")
    assert max(times) < 15, times
