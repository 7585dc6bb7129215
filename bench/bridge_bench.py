"""Bridge benchmark: records/s of one worker into JetStream, and bridge latency at 1k records/s.

Real Kafka (KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092) and a private nats-server started
here (file storage, acks and de-duplication on). The worker runs as an `ofa-serving bridge`
subprocess with its default settings. Medians of 3 runs.

- throughput: N records of 300 bytes are produced into a fresh derived topic (3 partitions,
  60 assets) first, then a worker is started; rate = records stored / time from the first to the
  last stored record (polling the stream's message count).
- latency: with the worker running, a producer writes 1,000 records/s for a few seconds, each
  carrying its send time; a subscriber on the live subjects (``asset.>``, i.e. after the stream
  stored and re-published it) measures produce -> live delivery.

Usage: .venv/bin/python bench/bridge_bench.py [--records 100000] [--runs 3] [--latency-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import nats
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from nats.aio.client import Client as NatsClient

from compose import local_infra
from ofa_contract.layout import Layout

REPO = Path(__file__).resolve().parents[1]
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


def _record(asset: str, seq: int, sent_ns: int = 0) -> bytes:
    body = {
        "ID": "temperature",
        "VALUE": 21.5 + seq % 10,
        "TAG": "Temperature",
        "TYPE": "Samples",
        "attributes": {"timestamp": "2025-08-29T14:02:11.123Z", "seq": seq, "sent_ns": sent_ns},
    }
    raw = msgspec.json.encode(body)
    pad = 300 - len(raw) - len(',"pad":""')
    body["pad"] = "x" * max(0, pad)
    return msgspec.json.encode(body)


def _spawn(tag: str, nats_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=KAFKA,
        NATS_URL=nats_url,
        LOG_LEVEL="WARNING",
        BRIDGE_CONSUMER_GROUP=f"bench-{tag}",
        BRIDGE_TOPIC_PREFIX=f"asset_stream_b{tag}_",
        BRIDGE_STREAM_NAME=f"B{tag}",
        BRIDGE_STREAM_SUBJECT_PREFIX=f"b{tag}.asset",
        BRIDGE_LIVE_SUBJECT_PREFIX=f"b{tag}.live",
        BRIDGE_STATE_BUCKET=f"state_{tag}",
        BRIDGE_OPS_PORT="0",
        BRIDGE_MAX_BYTES=str(512 * 1024**2),
        BRIDGE_WORKER_ID=f"bench-{tag}",
    )
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "compose.cli", "bridge"],
            env=env,
            cwd=str(REPO),
            stdout=f,
            stderr=subprocess.STDOUT,
        )


async def _count(js: object, stream: str) -> int:
    try:
        info = await js.stream_info(stream)  # type: ignore[attr-defined]
    except Exception:
        return 0
    return int(info.state.messages)


async def _stop_run(proc: subprocess.Popen[bytes], nc: NatsClient, tag: str) -> None:
    """Stop the run's worker and free its streams' storage reservation before the next run."""
    proc.terminate()
    proc.wait(60)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream(f"KV_state_{tag}")
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream(f"B{tag}")
    await nc.close()


async def throughput_run(nats_url: str, n: int, work: Path) -> float:
    tag = uuid.uuid4().hex[:8]
    topic = Layout(group_topic_prefix=f"asset_stream_b{tag}_").group_topic("WC1")
    await create_topics(KAFKA, [topic], partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futs = []
        for i in range(n):
            a = f"asset-{i % 60}"
            futs.append(await producer.send(topic, _record(a, i // 60), key=a.encode()))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    proc = _spawn(tag, nats_url, work / f"tp-{tag}.log")
    try:
        deadline = time.monotonic() + 300
        t0 = c0 = None
        while time.monotonic() < deadline:
            c = await _count(js, f"B{tag}")
            now = time.perf_counter()
            if c > 0 and t0 is None:
                t0, c0 = now, c
            if c >= n:
                assert t0 is not None and c0 is not None
                return (n - c0) / (now - t0)
            await asyncio.sleep(0.05)
        raise RuntimeError("throughput run did not finish")
    finally:
        await _stop_run(proc, nc, tag)


async def latency_run(nats_url: str, seconds: float, work: Path) -> tuple[float, float, int]:
    tag = uuid.uuid4().hex[:8]
    topic = Layout(group_topic_prefix=f"asset_stream_b{tag}_").group_topic("WC1")
    await create_topics(KAFKA, [topic], partitions=3)
    nc = await nats.connect(nats_url)
    lat: list[float] = []
    dec = msgspec.json.Decoder()
    warm = asyncio.Event()

    done = asyncio.Event()
    total = int(seconds * 1000)

    async def on_msg(msg: object) -> None:
        now = time.time_ns()
        if ".warm." in msg.subject:  # type: ignore[attr-defined]
            warm.set()
            return
        sent = dec.decode(msg.data)["attributes"]["sent_ns"]  # type: ignore[attr-defined]
        lat.append((now - sent) / 1e6)
        if len(lat) >= total:
            done.set()

    await nc.subscribe(f"b{tag}.live.>", cb=on_msg)
    proc = _spawn(tag, nats_url, work / f"lat-{tag}.log")
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=0)
    await producer.start()
    try:
        # Warm-up until the worker owns the topic and the path is live.
        for i in range(240):
            await producer.send_and_wait(topic, _record("warm", i, time.time_ns()), key=b"warm")
            if warm.is_set():
                break
            await asyncio.sleep(0.25)
        else:
            raise RuntimeError(f"the worker did not bridge within 60 s; see {work}")
        t0 = time.perf_counter()
        for i in range(total):
            target = t0 + i / 1000
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            a = f"asset-{i % 60}"
            await producer.send(topic, _record(a, i, time.time_ns()), key=a.encode())
        await producer.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
        if not lat:
            raise RuntimeError(f"no record reached the live subjects; see {work}")
        got = sorted(lat)
        p50 = got[len(got) // 2]
        p99 = got[min(len(got) - 1, int(len(got) * 0.99))]
        return p50, p99, len(got)
    finally:
        await producer.stop()
        await _stop_run(proc, nc, tag)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    args = ap.parse_args()
    # The work directory (store, worker logs) is kept for a look after a failed run.
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    print(f"work directory (nats-server store, worker logs): {work}")
    cfg = local_infra.private_config(work)
    nats_proc = local_infra.NatsProcess(cfg)
    nats_proc.start()
    try:
        await nats_proc.wait_ready()
        rates, lats = [], []
        for r in range(args.runs):
            rate = await throughput_run(nats_proc.url, args.records, work)
            rates.append(rate)
            print(f"run {r + 1}: throughput {rate:,.0f} records/s", flush=True)
        for r in range(args.runs):
            p50, p99, got = await latency_run(nats_proc.url, args.latency_seconds, work)
            lats.append((p50, p99))
            print(f"run {r + 1}: latency p50 {p50:.1f} ms p99 {p99:.1f} ms ({got} records)")
    finally:
        nats_proc.stop()
    shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'metric':<44}{'median':>12}{'runs':>30}")
    print(
        f"{'records/s, 1 worker, 300 B, acks+dedup':<44}{statistics.median(rates):>12,.0f}"
        f"{', '.join(f'{x:,.0f}' for x in rates):>30}"
    )
    for i, name in ((0, "p50"), (1, "p99")):
        vals = [x[i] for x in lats]
        print(
            f"{'latency ' + name + ' at 1k records/s (ms)':<44}{statistics.median(vals):>12.1f}"
            f"{', '.join(f'{x:.1f}' for x in vals):>30}"
        )


if __name__ == "__main__":
    asyncio.run(main())
