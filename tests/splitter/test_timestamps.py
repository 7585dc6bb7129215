"""Derived records carry the source record's timestamp (and say its type), so the bridge's
OpenFactory-layout ``attributes.kafka_timestamp`` is the ofa_assets record's, as OpenFactory's
forwarder reports it."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from ofa_contract.layout import KafkaHeaders
from tests.helpers import Endpoints
from tests.splitter.support import (
    header,
    names,
    read_input,
    read_outputs,
    running_splitter,
    src_coord,
    wait_caught_up,
)
from tests.support.kafka import create_topics

#: Producer timestamps far in the past: a splitter that stamped its own time would show.
OLD_MS = 1_600_000_000_000


@pytest.mark.parametrize("input_type", ["CreateTime", "LogAppendTime"])
async def test_derived_record_has_the_source_timestamp(
    infra: Endpoints, unique: str, input_type: str
) -> None:
    n = names(unique)
    await create_topics(
        infra.kafka, [n.input], partitions=2, config={"message.timestamp.type": input_type}
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, acks="all")
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(
                n.input,
                b'{"ID":"avail","VALUE":"AVAILABLE"}',
                key=f"TS-{i % 3}".encode(),
                timestamp_ms=OLD_MS + i,
            )
    finally:
        await producer.stop()
    source = {(r.partition, r.offset): r for r in await read_input(infra.kafka, n.input)}
    assert len(source) == 6
    async with running_splitter(infra.kafka, n):
        await wait_caught_up(infra.kafka, n)
    out = await read_outputs(infra.kafka, n)
    assert len(out) == 6
    expected_type = b"1" if input_type == "LogAppendTime" else b"0"
    for r in out:
        src = source[src_coord(r)]
        assert src.timestamp_type == int(expected_type)
        assert r.timestamp == src.timestamp
        # The derived topic is CreateTime whatever the broker's default, so the copy stands;
        # the header keeps whether the time was the producer's or the broker's.
        assert r.timestamp_type == 0
        assert header(r, KafkaHeaders.SRC_TIMESTAMP_TYPE) == expected_type
    stamps = sorted(r.timestamp for r in out)
    if input_type == "CreateTime":
        assert stamps == [OLD_MS + i for i in range(6)]
    else:
        assert all(s > OLD_MS + 1000 for s in stamps), (
            "the broker's append time, not the producer's"
        )
