"""Listeners of the end-to-end benchmark, each measuring the latency from the producer's stamp to
one hop: the input topic (the Kafka-only anchor), the derived topics, JetStream (the stream's
live republish, what edges subscribe to) and the edge (a few SSE streams read in this process, so
the edge is seen without the thousand load clients' own queueing). The load clients are the last
hop. `budget_rows` turns the hops of one phase into the per-hop budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import nats
from aiokafka import AIOKafkaConsumer, TopicPartition
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from bench.common import percentile
from bench.e2e_clients import Latencies, close_clients, open_clients, record_latencies

HOPS = ("input topic", "derived topic", "JetStream", "edge", "client")


async def kafka_listener(
    kafka: str, topics: Sequence[str], lat: Latencies, started: asyncio.Event, stop: asyncio.Event
) -> None:
    """Read every partition of ``topics`` from their end (read_committed, like the bridge)
    until ``stop``; ``started`` is set once positioned."""
    c = AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, isolation_level="read_committed"
    )
    await c.start()
    try:
        parts = []
        for t in topics:
            ps = c.partitions_for_topic(t) or set()
            if not ps:
                await c._client.force_metadata_update()  # a topic created a moment ago
                ps = c.partitions_for_topic(t) or set()
            parts += [TopicPartition(t, p) for p in sorted(ps)]
        if not parts:
            raise RuntimeError(f"no partitions found for {list(topics)}")
        c.assign(parts)
        await c.seek_to_end(*parts)
        for tp in parts:
            await c.position(tp)  # resolve the seek before saying we are positioned
        started.set()
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=100)
            now = time.time_ns()
            for recs in batch.values():
                for r in recs:
                    record_latencies(r.value or b"", now, lat)
    finally:
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka's group-less stop quirk
            await c.stop()


class Listeners:
    """The hop listeners of one phase; `start` returns once every one of them is positioned."""

    def __init__(self) -> None:
        self.hops: dict[str, Latencies] = {h: {} for h in HOPS[:-1]}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._nc: NatsClient | None = None
        self._sse: list[asyncio.Task[None]] = []

    async def add_kafka(self, hop: str, kafka: str, topics: Sequence[str]) -> None:
        """Start a Kafka listener for ``hop`` and wait until it is positioned."""
        started = asyncio.Event()
        task = asyncio.create_task(
            kafka_listener(kafka, topics, self.hops[hop], started, self._stop)
        )
        self._tasks.append(task)
        await asyncio.wait(
            [asyncio.create_task(started.wait()), task], return_when=asyncio.FIRST_COMPLETED
        )
        if task.done():
            task.result()

    async def add_nats(self, hop: str, url: str, subject: str) -> None:
        """Subscribe to ``subject`` (core NATS) for ``hop``."""
        lat = self.hops[hop]

        async def on_msg(msg: Msg) -> None:
            record_latencies(msg.data, time.time_ns(), lat)

        self._nc = await nats.connect(url, max_reconnect_attempts=3)
        await self._nc.subscribe(subject, cb=on_msg, pending_msgs_limit=1_000_000)
        await self._nc.flush()

    async def add_sse(self, hop: str, urls: list[str], timeout: float) -> None:
        """Open SSE streams read in this process for ``hop``."""
        self._sse = await open_clients(urls, self.hops[hop], timeout)

    async def stop(self) -> None:
        """Stop every listener (always safe to call)."""
        self._stop.set()
        await close_clients(self._sse)
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(t, 10)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()


def budget_rows(hops: dict[str, list[float]]) -> list[list[str]]:
    """Per hop: count, p50, p99 and what the hop adds to the previous one's p50/p99."""
    rows = []
    prev: tuple[float, float] | None = None
    for hop in HOPS:
        xs = hops.get(hop, [])
        if not xs:
            rows.append([hop, "0", "-", "-", "-", "-"])
            continue
        p50, p99 = percentile(xs, 50), percentile(xs, 99)
        add = ["-", "-"] if prev is None else [f"{p50 - prev[0]:+.1f}", f"{p99 - prev[1]:+.1f}"]
        rows.append([hop, str(len(xs)), f"{p50:.1f}", f"{p99:.1f}", *add])
        prev = (p50, p99)
    return rows
