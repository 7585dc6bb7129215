"""Cost of replication and of JetStream's fsync policy, on local clusters (compose/local_cluster).

For each JetStream ``sync_interval`` (NATS's default ``2m`` and ``always``) a 3-node NATS
cluster is started on loopback, and on it a stream with 1 replica and one with 3 replicas
(file storage, de-duplication on, as the bridge configures them):
- throughput: N messages of 300 bytes with ``publish_async`` and ~256 acks outstanding,
  messages per second until the last ack;
- latency: M messages published one at a time, each awaiting its ack: p50 and p99.
With ``--kafka``, also Kafka: a single broker with an RF-1 topic against 3 brokers with an
RF-3 topic (min.insync.replicas=2), idempotent producer with ``acks=all``, same two measures.

Medians of ``--runs`` runs. Everything shares this machine's cores: read ratios, not absolutes.

Usage: .venv/bin/python bench/cluster_bench.py [--messages 20000] [--latency 500] [--runs 3]
       [--kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import nats
from nats.js.api import StorageType, StreamConfig

from bench.common import median, percentile, print_table
from compose import local_cluster, local_infra

PAYLOAD = b"x" * 300
WINDOW = 256


async def _nats_throughput(js: nats.js.JetStreamContext, subject: str, n: int) -> float:
    t0 = time.perf_counter()
    pending: list[asyncio.Future[object]] = []
    for i in range(n):
        pending.append(await js.publish_async(subject, PAYLOAD, headers={"Nats-Msg-Id": str(i)}))
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return n / (time.perf_counter() - t0)


async def _nats_latency(js: nats.js.JetStreamContext, subject: str, m: int) -> list[float]:
    out = []
    for i in range(m):
        t0 = time.perf_counter()
        await js.publish(subject, PAYLOAD, headers={"Nats-Msg-Id": f"l{i}"})
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _nats_case(urls: list[str], replicas: int, n: int, m: int) -> tuple[float, list[float]]:
    nc = await nats.connect(urls)
    try:
        js = nc.jetstream(publish_async_max_pending=WINDOW * 2)
        name = f"BENCH_{uuid.uuid4().hex[:8]}"
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=[f"{name}.>"],
                storage=StorageType.FILE,
                num_replicas=replicas,
                duplicate_window=600.0,
            )
        )
        try:
            rate = await _nats_throughput(js, f"{name}.t", n)
            lat = await _nats_latency(js, f"{name}.l", m)
        finally:
            await js.delete_stream(name)
        return rate, lat
    finally:
        await nc.close()


async def bench_nats(sync: str, n: int, m: int, runs: int) -> list[list[object]]:
    """Rows (sync_interval, replicas, msg/s, p50 ms, p99 ms) on a fresh 3-node NATS cluster."""
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="ofa-bench-cluster-") as work:
        cfg = msgspec.structs.replace(local_infra.private_config(work), nats_sync_interval=sync)
        cluster = local_cluster.Cluster(cfg, local_cluster.private_nodes())
        for proc in cluster.nats:
            proc.start()
        try:
            await asyncio.gather(*(p.wait_ready(60) for p in cluster.nats))
            for replicas in (1, 3):
                rates, lats = [], []
                for _ in range(runs):
                    rate, lat = await _nats_case(cluster.nats_urls, replicas, n, m)
                    rates.append(rate)
                    lats.append(lat)
                rows.append(_row(f"NATS sync_interval={sync}", replicas, rates, lats))
        finally:
            for proc in cluster.nats:
                proc.stop()
    return rows


def _row(what: str, replicas: int, rates: list[float], lats: list[list[float]]) -> list[object]:
    return [
        what,
        replicas,
        f"{median(rates):,.0f}",
        f"{median([percentile(x, 50) for x in lats]):.2f}",
        f"{median([percentile(x, 99) for x in lats]):.2f}",
    ]


async def _kafka_case(bootstrap: str, rf: int, n: int, m: int) -> tuple[float, list[float]]:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench_{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, rf)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        await (await producer.send(topic, PAYLOAD))  # metadata and producer id
        t0 = time.perf_counter()
        futs = [await producer.send(topic, PAYLOAD, key=str(i % 60).encode()) for i in range(n)]
        await asyncio.gather(*futs)
        rate = n / (time.perf_counter() - t0)
        lat = []
        for _ in range(m):
            t1 = time.perf_counter()
            await (await producer.send(topic, PAYLOAD))
            lat.append((time.perf_counter() - t1) * 1000)
        return rate, lat
    finally:
        await producer.stop()


async def _kafka_runs(
    bootstrap: str, rf: int, n: int, m: int, runs: int, what: str
) -> list[object]:
    rates, lats = [], []
    for _ in range(runs):
        rate, lat = await _kafka_case(bootstrap, rf, n, m)
        rates.append(rate)
        lats.append(lat)
    return _row(what, rf, rates, lats)


async def bench_kafka(n: int, m: int, runs: int) -> list[list[object]]:
    """Rows for a single broker (RF 1) and 3 brokers (RF 3, min ISR 2)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ofa-bench-kafka-") as work:
        cfg = local_infra.private_config(work)
        single = local_infra.KafkaProcess(cfg)
        await asyncio.to_thread(single.start)
        try:
            await single.wait_ready()
            rows.append(await _kafka_runs(single.bootstrap, 1, n, m, runs, "Kafka 1 broker"))
        finally:
            await asyncio.to_thread(local_infra.kafka_stop, single.pid)
        cluster = local_cluster.Cluster(cfg, local_cluster.private_nodes())
        await asyncio.to_thread(_start_kafka, cluster)
        try:
            await asyncio.gather(*(k.wait_ready() for k in cluster.kafka))
            await local_cluster.wait_brokers(cluster.kafka_bootstrap, 3, 120)
            b = cluster.kafka_bootstrap
            rows.append(await _kafka_runs(b, 3, n, m, runs, "Kafka 3 brokers, min ISR 2"))
        finally:
            await asyncio.to_thread(cluster.stop)
    return rows


def _start_kafka(cluster: local_cluster.Cluster) -> None:
    for k in cluster.kafka:
        k.start()


async def main(args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    steps: list[Callable[[], Awaitable[list[list[object]]]]] = [
        lambda: bench_nats("2m", args.messages, args.latency, args.runs),
        lambda: bench_nats("always", args.messages, args.latency, args.runs),
    ]
    if args.kafka:
        steps.append(lambda: bench_kafka(args.messages, args.latency, args.runs))
    for step in steps:
        rows += await step()
    print_table(
        f"Replication and fsync cost: {args.messages} x 300 B for throughput (window {WINDOW}), "
        f"{args.latency} one-at-a-time for latency, medians of {args.runs}",
        ["what", "replicas", "msg/s", "ack p50 ms", "ack p99 ms"],
        rows,
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--latency", type=int, default=500)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--kafka", action="store_true", help="also Kafka RF 1 against RF 3")
    asyncio.run(main(p.parse_args()))
