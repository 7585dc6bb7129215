"""The local servers are the real thing: topics, produce/consume, transactions, JetStream dedup."""

from __future__ import annotations

import nats
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from nats.js.api import StreamConfig

from compose.local_infra import NatsProcess
from tests.helpers import Endpoints, consume_all, create_topics, produce


async def test_create_topics_produce_and_consume(infra: Endpoints, unique: str) -> None:
    topic = f"t_basic_{unique}"
    await create_topics(infra.kafka, [topic], partitions=3)
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        meta = await admin.describe_topics([topic])
        assert len(meta[0]["partitions"]) == 3
    finally:
        await admin.close()
    await produce(infra.kafka, topic, [(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(50)])
    got = await consume_all(infra.kafka, [topic], expect=50)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(50))
    # Same key -> same partition (murmur2 default partitioner, like Java).
    by_key: dict[bytes, set[int]] = {}
    for r in got:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in by_key.values())


async def test_transactional_consume_transform_produce(infra: Endpoints, unique: str) -> None:
    src, dst = f"t_src_{unique}", f"t_dst_{unique}"
    group = f"g_{unique}"
    await create_topics(infra.kafka, [src, dst], partitions=1)
    await produce(infra.kafka, src, [(b"k", f"{i}".encode(), []) for i in range(10)])

    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=infra.kafka,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, transactional_id=f"tx-{unique}")
    await consumer.start()
    await producer.start()
    try:
        batch: list = []
        while len(batch) < 10:
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                batch.extend(recs)
        tp = TopicPartition(src, 0)
        # First transaction: transform the first half and commit input offsets with it.
        async with producer.transaction():
            for r in batch[:5]:
                await producer.send(dst, b"out-" + r.value, key=r.key)
            await producer.send_offsets_to_transaction({tp: batch[4].offset + 1}, group)
        # Second transaction: aborted; neither its outputs nor its offsets may become visible.
        await producer.begin_transaction()
        for r in batch[5:]:
            await producer.send(dst, b"aborted-" + r.value, key=r.key)
        await producer.send_offsets_to_transaction({tp: batch[9].offset + 1}, group)
        await producer.abort_transaction()
        # Marker records make the end offset larger than the count of visible records.
        committed = await consumer.committed(tp)
        assert committed == 5
    finally:
        await producer.stop()
        await consumer.stop()

    visible = await consume_all(infra.kafka, [dst], read_committed=True)
    assert [r.value for r in visible] == [f"out-{i}".encode() for i in range(5)]
    raw = await consume_all(infra.kafka, [dst], read_committed=False)
    assert len(raw) == 10, "read_uncommitted sees the aborted records: the abort was real"


async def test_jetstream_dedup_by_msg_id(infra: Endpoints, unique: str) -> None:
    nc = await nats.connect(infra.nats)
    js = nc.jetstream()
    name = f"T_{unique}"
    try:
        await js.add_stream(
            StreamConfig(name=name, subjects=[f"t.{unique}.>"], duplicate_window=120.0)
        )
        first = await js.publish(f"t.{unique}.a", b"one", headers={"Nats-Msg-Id": "topic:0:7"})
        second = await js.publish(f"t.{unique}.a", b"one", headers={"Nats-Msg-Id": "topic:0:7"})
        third = await js.publish(f"t.{unique}.a", b"two", headers={"Nats-Msg-Id": "topic:0:8"})
        assert not first.duplicate
        assert second.duplicate and second.seq == first.seq
        assert third.seq == first.seq + 1
        info = await js.stream_info(name)
        assert info.state.messages == 2
    finally:
        await js.delete_stream(name)
        await nc.close()


async def test_private_nats_restart_keeps_jetstream_data(nats_private: NatsProcess) -> None:
    nc = await nats.connect(nats_private.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="KEEP", subjects=["keep.>"]))
    await js.publish("keep.a", b"x")
    await nc.close()
    nats_private.stop()
    nats_private.start()
    await nats_private.wait_ready()
    nc = await nats.connect(nats_private.url)
    try:
        info = await nc.jetstream().stream_info("KEEP")
        assert info.state.messages == 1
    finally:
        await nc.close()
