"""Routing, default group, regrouping, new groups and dead letters, with a splitter running in
the test's event loop against the real broker."""

from __future__ import annotations

from compose.simulator import Factory
from ofa_contract.layout import KafkaHeaders
from ofa_contract.topics import DEFAULT_GROUP
from tests.helpers import Endpoints
from tests.splitter.support import (
    by_topic,
    header,
    read_input,
    read_outputs,
    running_splitter,
    seeded_input,
    seq_of,
    src_coord,
    wait_caught_up,
)


async def test_routes_three_workcenters(infra: Endpoints, unique: str) -> None:
    factory = Factory(9, 3, prefix=f"R{unique}")
    seeded = await seeded_input(infra.kafka, unique, factory, count=300, rate=2000)
    n, written = seeded.n, seeded.written
    async with running_splitter(infra.kafka, n) as splitter:
        await wait_caught_up(infra.kafka, n)
        out = await read_outputs(infra.kafka, n)
        assert len(out) == written
        topics = by_topic(out)
        expected_topics = {n.layout.group_topic(wc) for wc in ("WC1", "WC2", "WC3")}
        expected_topics.add(n.layout.group_topic(DEFAULT_GROUP))
        assert set(topics) == expected_topics
        for asset in factory.assets:
            topic = n.layout.group_topic(factory.workcenter[asset])
            mine = [r for r in topics[topic] if r.key == asset.encode()]
            # Everything from the workcenter record on (seq 4), in order, nothing elsewhere.
            assert [seq_of(r) for r in mine] == list(range(4, factory.seq[asset] + 1))
            before = [
                r for r in topics[n.layout.group_topic(DEFAULT_GROUP)] if r.key == asset.encode()
            ]
            assert [seq_of(r) for r in before] == [1, 2, 3]
        for helper in factory.helpers:
            rs = [r for r in out if r.key == helper.encode()]
            assert {r.topic for r in rs} == {n.layout.group_topic(DEFAULT_GROUP)}
        # Value bytes and headers are the originals, plus the source coordinates and group.
        inputs = {(r.partition, r.offset): r for r in await read_input(infra.kafka, n.input)}
        for r in out:
            src = inputs[src_coord(r)]
            assert r.value == src.value and r.key == src.key
            assert list(r.headers[: len(src.headers)]) == list(src.headers)
            assert header(r, KafkaHeaders.SRC_TOPIC) == n.input.encode()
            assert header(r, KafkaHeaders.GROUP) == n.layout.group_from_topic(r.topic).encode()
        assert len({src_coord(r) for r in out}) == written
        metrics = splitter.metrics
        assert metrics.records_out.labels("WC1")._value.get() > 0
