"""aiokafka produce/consume throughput against the local Kafka (the floor of the data path).

    .venv/bin/python bench/kafka_bench.py [--records 100000] [--runs 3]

Uses KAFKA_BOOTSTRAP_SERVERS/NATS_URL when set, otherwise starts private local servers.
Prints medians of the runs; 300-byte values, linger_ms=5, acks=all, 6 partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import median, print_table, servers
from tests.helpers import create_topics


async def one_run(bootstrap: str, n: int) -> tuple[float, float]:
    topic = f"bench_{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap, [topic], partitions=6)
    value = b"x" * 300
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, acks="all", max_batch_size=256 * 1024
    )
    await producer.start()
    t0 = time.perf_counter()
    futs = []
    for i in range(n):
        futs.append(await producer.send(topic, value, key=str(i % 500).encode()))
        if len(futs) >= 5000:
            await asyncio.gather(*futs)
            futs.clear()
    await asyncio.gather(*futs)
    produce_rate = n / (time.perf_counter() - t0)
    await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=16 << 20,
    )
    await consumer.start()
    parts = [TopicPartition(topic, p) for p in range(6)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    got = 0
    t0 = time.perf_counter()
    while got < n:
        for recs in (await consumer.getmany(timeout_ms=1000, max_records=10000)).values():
            got += len(recs)
    consume_rate = n / (time.perf_counter() - t0)
    await consumer.stop()
    return produce_rate, consume_rate


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    async with servers() as (kafka, _):
        results = [await one_run(kafka, args.records) for _ in range(args.runs)]
    prod = [r[0] for r in results]
    cons = [r[1] for r in results]
    print_table(
        f"aiokafka against local Kafka 3.9.1 ({args.records} x 300 B, {args.runs} runs)",
        ["metric", "median", "runs"],
        [
            ["produce msg/s", f"{median(prod):,.0f}", " ".join(f"{x:,.0f}" for x in prod)],
            ["consume msg/s", f"{median(cons):,.0f}", " ".join(f"{x:,.0f}" for x in cons)],
        ],
    )


if __name__ == "__main__":
    asyncio.run(main())
