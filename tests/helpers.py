"""Small helpers shared by the integration tests (real servers only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contract" / "ofa_assets.samples.jsonl"
if not SAMPLES.exists():  # CI lays shared/ beside the clone; a developer may keep a copy inside
    SAMPLES = (
        Path(__file__).resolve().parents[1] / "shared" / "contract" / "ofa_assets.samples.jsonl"
    )


#: Debian's chromium, headless, as root, on a machine with no network but loopback: without the
#: background-networking flags it keeps trying (and failing) to reach Google's hosts.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Endpoints(msgspec.Struct):
    """Addresses of the real servers a test talks to."""

    kafka: str
    nats: str
    work_dir: Path | None = None


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


def load_samples() -> list[dict[str, Any]]:
    """The contract's test vectors, one dict per line."""
    return [msgspec.json.decode(line) for line in SAMPLES.read_text().splitlines() if line.strip()]


def sample_record(s: dict[str, Any]) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Turn one samples-file line into a raw Kafka (key, value, headers) record."""
    if "key_hex" in s:
        key: bytes | None = bytes.fromhex(s["key_hex"].replace(" ", ""))
    else:
        key = s["key"].encode() if s.get("key") is not None else None
    if "value_raw" in s:
        value: bytes | None = s["value_raw"].encode()
    elif s.get("value") is None and "2 MiB" in s["note"]:
        value = msgspec.json.encode({"ID": "big", "VALUE": "x" * 2097152, "TYPE": "Samples"})
    else:
        value = msgspec.json.encode(s["value"])
    headers = [(k, v.encode()) for k, v in s.get("headers", {}).items()]
    return key, value, headers
