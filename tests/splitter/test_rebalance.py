"""A rebalance that leaves the splitter its partitions must not split a record twice.

aiokafka's OffsetFetch has no KIP-447 ``require_stable``: right after a transaction committed, the
broker may still answer the offset before it (until the commit markers are written). A splitter
that re-read its committed offsets for partitions it kept across a rebalance could seek back and
write records again; it seeks to its own processed position instead. The race needs a loaded
broker to show up, so this test exercises the path many times while records flow."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from compose.simulator import Factory, simulate
from tests.helpers import Endpoints
from tests.splitter.support import (
    make_input,
    names,
    read_input,
    read_outputs,
    running_splitter,
    wait_caught_up,
)
from tests.splitter.test_crash import check_exactly_once
from tests.support.kafka import create_topics
from tests.support.wait import wait_until


async def test_rebalances_keeping_the_partitions_split_each_record_once(
    infra: Endpoints, unique: str
) -> None:
    n = names(unique)
    other_topic = f"sp{unique}_other"
    await make_input(infra.kafka, n, partitions=3)
    await create_topics(infra.kafka, [other_topic], partitions=1)
    factory = Factory(6, 2, prefix=f"B{unique}")
    sim_stop = asyncio.Event()
    sim = asyncio.create_task(
        simulate(factory, infra.kafka, n.input, rate=800, duration=120, stop=sim_stop)
    )
    try:
        async with running_splitter(infra.kafka, n) as splitter:
            for _ in range(5):
                # Another member of the splitter's group, subscribed to another topic: joining
                # and leaving makes two rebalances in which the splitter keeps every partition.
                other = AIOKafkaConsumer(
                    other_topic, bootstrap_servers=infra.kafka, group_id=n.group_id
                )
                await other.start()
                try:

                    async def joined(c: AIOKafkaConsumer = other) -> bool:
                        return bool(c.assignment())

                    await wait_until(joined, timeout=60, what="the other member to join")
                    assert {tp.topic for tp in other.assignment()} == {other_topic}
                finally:
                    await other.stop()

                async def ready() -> bool:
                    return not await splitter.ready_issues()

                await wait_until(ready, timeout=60, what="the splitter to own its partitions again")
            sim_stop.set()
            await sim
            await wait_caught_up(infra.kafka, n, timeout=90)
    finally:
        sim_stop.set()
        if not sim.done():
            sim.cancel()
    inputs = await read_input(infra.kafka, n.input)
    out = await read_outputs(infra.kafka, n)
    check_exactly_once(factory, n, inputs, out)
