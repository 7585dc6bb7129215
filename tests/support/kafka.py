"""Kafka helpers of the tests: create topics, produce raw records, read topics back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 3, config: dict[str, str] | None = None
) -> None:
    """Create topics (ignoring ones that exist) and wait until their metadata is visible."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [NewTopic(n, partitions, 1, topic_configs=config or {}) for n in names]
        try:
            await admin.create_topics(topics)
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> list[Any]:
    """Produce (key, value, headers) records idempotently; return their RecordMetadata."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        futs = [await producer.send(topic, v, key=k, headers=h) for k, v, h in records]
        return list(await asyncio.gather(*futs))
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topics: list[str],
    *,
    expect: int | None = None,
    timeout: float = 30.0,
    read_committed: bool = True,
) -> list[Any]:
    """Read topics from the beginning, without a consumer group.

    Returns once ``expect`` records arrived (or, without ``expect``, once the end offsets are
    reached); after ``timeout`` seconds it returns what it has, for the caller to assert on.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[Any] = []
    try:
        parts = []
        for t in topics:
            for _ in range(50):
                ps = consumer.partitions_for_topic(t)
                if ps:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            parts += [TopicPartition(t, p) for p in sorted(ps or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                out.extend(recs)
            if expect is not None and len(out) >= expect:
                break
            if expect is None:
                ends = await consumer.end_offsets(parts)
                positions = [await consumer.position(tp) for tp in parts]
                if all(pos >= ends[tp] for pos, tp in zip(positions, parts, strict=True)):
                    break
        return out
    finally:
        await consumer.stop()


async def list_topics(bootstrap: str, prefix: str = "") -> list[str]:
    """Topics whose name starts with ``prefix``, sorted."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()
