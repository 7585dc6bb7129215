"""Benchmark of the splitter (`ofa-serving split`, exactly-once on) against a real broker.

1. Throughput: N pre-produced 300-byte records on a 6-partition input, one splitter process;
   records/s from the moment it is ready (partitions assigned, table restored) until its
   committed offsets reach the end of the input.
2. Added latency: records appended at a steady 1k records/s; for each, the time from the
   producer's send to its arrival at a read_committed consumer of the derived topics.

Each is run 3 times on fresh topics; medians are printed. The splitter runs as a subprocess
(`python -m compose.cli split`); the bench process produces and consumes. Kafka, the splitter
and the bench share the machine's cores.

    .venv/bin/python bench/splitter_bench.py [--records 200000] [--runs 3] [--latency-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compose.local_infra import free_port  # noqa: E402
from ofa_contract.layout import Layout  # noqa: E402

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 6
RECORD_BYTES = 300
ASSETS = 60
WORKCENTERS = 3


def value(asset: str, seq: int, item: str, val: Any, t_ns: int = 0) -> bytes:
    """An OpenFactory-style record padded to RECORD_BYTES."""
    body: dict[str, Any] = {
        "ID": item,
        "VALUE": val,
        "TAG": "Position",
        "TYPE": "Samples",
        "attributes": {"timestamp": "2025-08-29T14:02:11.123Z", "seq": seq, "t": t_ns, "pad": ""},
    }
    raw = msgspec.json.encode(body)
    body["attributes"]["pad"] = "x" * max(RECORD_BYTES - len(raw), 0)
    return msgspec.json.encode(body)


class Run:
    """Fresh names for one run."""

    def __init__(self) -> None:
        u = uuid.uuid4().hex[:8]
        self.input = f"bench{u}_assets"
        self.prefix = f"bench{u}_stream_"
        self.group_id = f"bench{u}_splitter"
        self.u = u
        self.assets = [f"B{u}-{i:03d}" for i in range(ASSETS)]

    def env(self, ops_port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                "INPUT_TOPIC": self.input,
                "LOG_LEVEL": "WARNING",
                "LOG_FORMAT": "json",
                "SPLIT_GROUP_ID": self.group_id,
                "SPLIT_TRANSACTIONAL_ID_PREFIX": f"bench{self.u}",
                "SPLIT_TOPIC_PREFIX": self.prefix,
                "SPLIT_GROUPS_TOPIC": f"bench{self.u}_groups",
                "SPLIT_CHANGELOG_TOPIC": f"bench{self.u}_changelog",
                "SPLIT_DLQ_TOPIC": f"bench{self.u}_dlq",
                "SPLIT_TOPIC_PARTITIONS": "3",
                "SPLIT_OPS_PORT": str(ops_port),
                "PYTHONPATH": str(REPO),
            }
        )
        return env


async def create_input(run: Run) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(run.input, PARTITIONS, 1)])
        for _ in range(100):
            (desc,) = await admin.describe_topics([run.input])
            if desc["partitions"]:
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def produce_registration(producer: AIOKafkaProducer, run: Run) -> None:
    futs = []
    for i, asset in enumerate(run.assets):
        wc = f"WC{i % WORKCENTERS + 1}"
        futs.append(
            await producer.send(run.input, value(asset, 0, "workcenter", wc), key=asset.encode())
        )
    await asyncio.gather(*futs)


async def http_ready(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        line = await reader.readline()
        return b" 200 " in line
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def splitter(run: Run, log: Path) -> Any:
    port = free_port()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "compose.cli",
            "split",
            env=run.env(port),
            cwd=str(REPO),
            stdout=fd,
            stderr=fd,
        )
    finally:
        os.close(fd)
    try:
        deadline = time.monotonic() + 60
        while not await http_ready(port):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"splitter did not become ready; see {log}")
            await asyncio.sleep(0.02)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def committed_total(admin: AIOKafkaAdminClient, group_id: str) -> int:
    got = await admin.list_consumer_group_offsets(group_id)
    return sum(om.offset for om in got.values() if om.offset > 0)


async def throughput_run(records: int, log: Path) -> float:
    run = Run()
    await create_input(run)
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        await produce_registration(producer, run)
        futs = []
        for i in range(records - ASSETS):
            asset = run.assets[i % ASSETS]
            futs.append(
                await producer.send(run.input, value(asset, i, "Zact", i), key=asset.encode())
            )
            if len(futs) >= 5000:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        async with splitter(run, log):
            t0 = time.monotonic()
            deadline = t0 + 600
            while await committed_total(admin, run.group_id) < records:
                if time.monotonic() > deadline:
                    raise RuntimeError("splitter did not finish within 600 s")
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - t0
    finally:
        await admin.close()
    return records / elapsed


async def tail_consumer(topics: list[str]) -> AIOKafkaConsumer:
    """A started read_committed consumer assigned every partition of ``topics`` (waiting for
    their metadata), positioned at their ends."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=int(os.environ.get("BENCH_FETCH_WAIT_MS", "5")),
    )
    await consumer.start()
    for _ in range(100):
        await consumer._client.force_metadata_update()
        if all(consumer.partitions_for_topic(t) for t in topics):
            break
        await asyncio.sleep(0.1)
    parts = [
        TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())
    ]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    return consumer


async def latency_run(seconds: float, rate: float, log: Path) -> dict[str, float]:
    run = Run()
    await create_input(run)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    latencies: list[float] = []
    try:
        await produce_registration(producer, run)
        async with splitter(run, log):
            layout = Layout(group_topic_prefix=run.prefix)
            topics = [layout.group_topic(f"WC{i + 1}") for i in range(WORKCENTERS)]
            consumer = await tail_consumer(topics)
            try:
                total = int(seconds * rate)
                received = 0
                done = asyncio.Event()

                async def consume() -> None:
                    nonlocal received
                    dec = msgspec.json.Decoder()
                    while received < total:
                        batch = await consumer.getmany(timeout_ms=100)
                        now = time.monotonic_ns()
                        for recs in batch.values():
                            for r in recs:
                                t = dec.decode(r.value)["attributes"]["t"]
                                if t:
                                    latencies.append((now - t) / 1e6)
                                    received += 1
                    done.set()

                task = asyncio.create_task(consume())
                start = time.monotonic()
                for i in range(total):
                    due = start + i / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    asset = run.assets[i % ASSETS]
                    await producer.send(
                        run.input,
                        value(asset, i + 1, "Zact", i, time.monotonic_ns()),
                        key=asset.encode(),
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 30)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            finally:
                await consumer.stop()
    finally:
        await producer.stop()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(int(p * len(latencies)), len(latencies) - 1)]

    return {
        "received": float(len(latencies)),
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": latencies[-1],
    }


async def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=1000.0)
    args = p.parse_args()
    log = Path(tempfile.mkdtemp(prefix="splitter-bench-")) / "splitter.log"
    print(f"Kafka {BOOTSTRAP}; splitter logs in {log}; cores: {os.cpu_count()}", flush=True)
    tputs = []
    for i in range(args.runs):
        r = await throughput_run(args.records, log)
        print(f"  throughput run {i + 1}: {r:,.0f} records/s", flush=True)
        tputs.append(r)
    lats = []
    for i in range(args.runs):
        r = await latency_run(args.latency_seconds, args.rate, log)
        print(
            f"  latency run {i + 1}: p50 {r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  "
            f"max {r['max']:.1f} ms  ({r['received']:.0f} records)",
            flush=True,
        )
        lats.append(r)
    print()
    print(f"| metric (median of {args.runs}) | value | goal |")
    print("|---|---|---|")
    print(
        f"| EOS throughput, {PARTITIONS} partitions, {RECORD_BYTES} B | "
        f"{statistics.median(tputs):,.0f} rec/s | >= 30,000 rec/s |"
    )
    for key in ("p50", "p99", "max"):
        print(
            f"| added latency {key} at {args.rate:.0f} rec/s | "
            f"{statistics.median(r[key] for r in lats):.1f} ms | "
            f"{'<= 20 ms' if key == 'p99' else ''} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
