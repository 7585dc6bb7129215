"""Splitter cost per delivery mode at a steady rate (issue 12, goal 3: <= 0.05 CPU-s per 1k
records at 1k records/s).

For each mode (``SPLIT_DELIVERY`` = ``exactly_once``, ``at_least_once``) and each run: fresh
topics, one splitter subprocess (`python -m compose.cli split`), records appended at a steady
``--rate`` for ``--warm-s`` (not measured) then ``--measure-s`` seconds. Measured over the
second phase:

- the splitter's CPU-seconds (utime + stime of its process, from /proc/<pid>/stat) per 1k
  records;
- the latency from the producer's send to the record's arrival at a read_committed consumer
  of the derived topics, and, in the same run and phase, at a consumer of the input topic
  itself (the Kafka-alone anchor); the added latency is the difference of the percentiles.

Runs alternate between the modes; medians and spread (min-max) over ``--runs`` are printed.
Kafka is private (started here) unless ``KAFKA_BOOTSTRAP_SERVERS`` names one.

    .venv/bin/python -m bench.splitter_cost [--runs 3] [--rate 1000] [--warm-s 5] [--measure-s 20]
        [--modes exactly_once at_least_once at_least_once@50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import splitter_bench as sb
from bench.common import median, percentile, print_table, servers
from ofa_contract.layout import Layout
from tests.e2e.stack import cpu_seconds

MODES = ("exactly_once", "at_least_once")


class ModeRun(sb.Run):
    """Fresh names for one run, and the splitter's delivery mode: ``exactly_once``,
    ``at_least_once`` or ``at_least_once@<SPLIT_FETCH_BATCH_MS>``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode, _, self.fetch_batch_ms = mode.partition("@")

    def env(self, ops_port: int) -> dict[str, str]:
        env = super().env(ops_port)
        env["SPLIT_DELIVERY"] = self.mode
        if self.fetch_batch_ms:
            env["SPLIT_FETCH_BATCH_MS"] = self.fetch_batch_ms
        return env


def mode_arg(text: str) -> str:
    """A ``--modes`` value: a mode, or ``at_least_once@<fetch batch ms>``."""
    mode, at, ms = text.partition("@")
    if mode not in MODES or (at and (mode != "at_least_once" or not ms.isdigit())):
        raise argparse.ArgumentTypeError(f"{text!r}: exactly_once, at_least_once[@<ms>]")
    return text


class Result(msgspec.Struct):
    cpu_per_1k: float
    p50: float
    p99: float
    kafka_p50: float
    kafka_p99: float
    received: int


async def _collect(
    consumer: AIOKafkaConsumer, since_ns: list[int], out: list[float], want: int
) -> None:
    """Latencies (ms) of records stamped after ``since_ns[0]`` (0 = not measuring yet)."""
    dec = msgspec.json.Decoder()
    while len(out) < want:
        batch = await consumer.getmany(timeout_ms=100)
        now = time.monotonic_ns()
        for recs in batch.values():
            for r in recs:
                t = dec.decode(r.value)["attributes"]["t"]
                if since_ns[0] and t >= since_ns[0]:
                    out.append((now - t) / 1e6)


async def one_run(mode: str, args: argparse.Namespace, log: Path) -> Result:
    run = ModeRun(mode)
    await sb.create_input(run)
    producer = AIOKafkaProducer(bootstrap_servers=sb.BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await sb.produce_registration(producer, run)
        async with sb.splitter(run, log) as proc:
            layout = Layout(group_topic_prefix=run.prefix)
            derived = await sb.tail_consumer(
                [layout.group_topic(f"WC{i + 1}") for i in range(sb.WORKCENTERS)]
            )
            anchor = await sb.tail_consumer([run.input])
            try:
                return await _phases(run, args, producer, proc.pid, derived, anchor)
            finally:
                await derived.stop()
                await anchor.stop()
    finally:
        await producer.stop()


async def _phases(
    run: ModeRun,
    args: argparse.Namespace,
    producer: AIOKafkaProducer,
    pid: int,
    derived: AIOKafkaConsumer,
    anchor: AIOKafkaConsumer,
) -> Result:
    """Warm-up then measured phase at a steady rate; CPU of ``pid`` over the measured one."""
    warm = int(args.warm_s * args.rate)
    total = warm + int(args.measure_s * args.rate)
    since = [0]
    lat: list[float] = []
    kafka: list[float] = []
    tasks = [
        asyncio.create_task(_collect(derived, since, lat, total - warm)),
        asyncio.create_task(_collect(anchor, since, kafka, total - warm)),
    ]
    start = time.monotonic()
    cpu0 = 0.0
    for i in range(total):
        if i == warm:
            cpu0 = cpu_seconds(pid)
            since[0] = time.monotonic_ns()
        delay = start + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        asset = run.assets[i % sb.ASSETS]
        await producer.send(
            run.input, sb.value(asset, i + 1, "Zact", i, time.monotonic_ns()), key=asset.encode()
        )
    cpu1 = cpu_seconds(pid)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Result(
        cpu_per_1k=(cpu1 - cpu0) / ((total - warm) / 1000),
        p50=percentile(lat, 50),
        p99=percentile(lat, 99),
        kafka_p50=percentile(kafka, 50),
        kafka_p99=percentile(kafka, 99),
        received=len(lat),
    )


def _cell(xs: list[float], fmt: str) -> str:
    return f"{median(xs):{fmt}} ({min(xs):{fmt}}-{max(xs):{fmt}})"


def report(results: dict[str, list[Result]], args: argparse.Namespace) -> None:
    rows: list[list[Any]] = []
    for mode, rs in results.items():
        rows.append(
            [
                mode,
                _cell([r.cpu_per_1k for r in rs], ".3f"),
                _cell([r.p50 for r in rs], ".1f"),
                _cell([r.p99 for r in rs], ".1f"),
                _cell([r.kafka_p50 for r in rs], ".1f"),
                _cell([r.kafka_p99 for r in rs], ".1f"),
                _cell([r.p50 - r.kafka_p50 for r in rs], ".1f"),
                _cell([r.p99 - r.kafka_p99 for r in rs], ".1f"),
            ]
        )
    print_table(
        f"splitter at {args.rate:.0f} records/s, {args.measure_s:.0f} s measured after "
        f"{args.warm_s:.0f} s warm-up; median (min-max) of {args.runs} runs; goal <= 0.05 CPU-s/1k",
        [
            "mode",
            "CPU-s/1k rec",
            "p50 ms",
            "p99 ms",
            "Kafka p50",
            "Kafka p99",
            "added p50",
            "added p99",
        ],
        rows,
    )


async def main_async(args: argparse.Namespace) -> None:
    log = Path(tempfile.mkdtemp(prefix="splitter-cost-")) / "splitter.log"
    async with servers() as (kafka, _nats):
        sb.BOOTSTRAP = kafka
        print(f"Kafka {kafka}; splitter logs in {log}", flush=True)
        results: dict[str, list[Result]] = {m: [] for m in args.modes}
        for i in range(args.runs):
            for mode in args.modes:
                r = await one_run(mode, args, log)
                results[mode].append(r)
                print(
                    f"  run {i + 1} {mode}: {r.cpu_per_1k:.3f} CPU-s/1k, p50 {r.p50:.1f} ms, "
                    f"p99 {r.p99:.1f} ms (Kafka alone {r.kafka_p50:.1f}/{r.kafka_p99:.1f} ms), "
                    f"{r.received} records",
                    flush=True,
                )
        report(results, args)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--warm-s", type=float, default=5.0)
    p.add_argument("--measure-s", type=float, default=20.0)
    p.add_argument(
        "--modes",
        nargs="+",
        type=mode_arg,
        default=list(MODES),
        help="exactly_once, at_least_once, at_least_once@<SPLIT_FETCH_BATCH_MS> (default both)",
    )
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
