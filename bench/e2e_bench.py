"""End-to-end benchmark: produce on the input topic -> event parsed by SSE clients, whole stack
(splitter, 2 bridge workers, 2 edges, router in redirect mode; exactly-once everywhere), each
run on a fresh Kafka (private, unless KAFKA_BOOTSTRAP_SERVERS names one), a fresh nats-server
and a fresh stack. Issue 12, goal 1.

Each run warms Kafka up (a batch produced and read back on a scratch topic), registers the
assets, then measures each row (``--rows``: client counts over ``--assets`` assets at
``--rate`` events/s): the clients connect, a warm-up phase of the stack runs at the rate, then
the measured phase. Every record carries ``attributes.ts_ns`` (wall clock at produce time) and
the phase; the latency is taken where the event is parsed. The Kafka-only anchor is a plain
consumer of the input topic in the same phase of the same run; the ratios and the verdicts of
issue 12's goal 1 are printed against it (100 clients: p50 <= 3x, p99 <= 2x; 1,000 clients:
p99 <= 3x). CPU-seconds per component come from /proc/<pid>/stat over each phase.

    .venv/bin/python -m bench.e2e_bench [--runs 3] [--phase-s 20] [--probe] [--openfactory-cpu]

``--probe`` adds the per-hop budget (input topic, derived topics, JetStream, edge, client);
its listeners add load, so judge the goals on a run without it. ``--openfactory-cpu`` runs the
stack with BRIDGE_OPENFACTORY_SUBJECTS=true and =false and reports the bridge's CPU-s per 1k
events for each. Every wait is bounded and ``--run-timeout-s`` caps each run; on SIGTERM,
Ctrl-C or a timeout every process started here is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer

from bench.e2e_clients import ClientPool, expected_deliveries
from bench.e2e_probe import Listeners
from bench.e2e_report import (
    RowResult,
    machine_lines,
    print_budget,
    print_cpu,
    print_openfactory,
    print_rows,
    verdict_lines,
)
from compose.local_infra import KafkaProcess, NatsProcess, kafka_stop, private_config
from compose.simulator import Factory
from ofa_contract.layout import Layout
from tests.e2e.stack import Stack, cpu_seconds
from tests.support.kafka import consume_all, create_topics, list_topics, produce
from tests.support.wait import wait_until

WARM_BATCH = 5000  # records produced and read back to warm Kafka up before anything is timed
SSE_PROBE_ASSETS = 10  # assets the in-process "edge" hop reads (1 stream each)


class Bench(msgspec.Struct, kw_only=True, frozen=True):
    """The options of one invocation."""

    rows: list[int]
    assets: int
    rate: int
    client_procs: int
    phase_s: float
    warmup_s: float
    tail_s: float
    probe: bool


# ------------------------------------------------------------------ infrastructure


@contextlib.asynccontextmanager
async def infra(work: Path) -> AsyncIterator[tuple[str, NatsProcess, dict[str, int]]]:
    """(kafka bootstrap, nats, pids of servers started here): a fresh nats-server, and a fresh
    private Kafka unless KAFKA_BOOTSTRAP_SERVERS is set."""
    cfg = private_config(work)
    kafka_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    kafka = None if kafka_env else KafkaProcess(cfg)
    nats = NatsProcess(cfg)
    try:
        if kafka is not None:
            await asyncio.to_thread(kafka.start)
            await kafka.wait_ready()
        nats.start()
        await nats.wait_ready()
        pids = {"nats-server": nats.pid or 0} | ({"kafka": kafka.pid or 0} if kafka else {})
        yield (kafka.bootstrap if kafka else kafka_env or ""), nats, pids
    finally:
        await asyncio.to_thread(nats.stop)
        if kafka is not None:
            await asyncio.to_thread(kafka_stop, kafka.pid)


async def warm_kafka(kafka: str, topic: str, partitions: int) -> None:
    """Produce a batch and read it back, so the first measured records do not pay for cold
    connections, metadata, log segments and the JIT."""
    await create_topics(kafka, [topic], partitions)
    await produce(kafka, topic, ((b"k%d" % (i % 100), b"x" * 300, []) for i in range(WARM_BATCH)))
    got = await consume_all(kafka, [topic], expect=WARM_BATCH, timeout=60)
    if len(got) < WARM_BATCH:
        raise RuntimeError(f"Kafka warm-up read {len(got)} of {WARM_BATCH} records")


async def produce_phase(
    producer: AIOKafkaProducer, topic: str, assets: list[str], rate: int, secs: float, ph: int
) -> int:
    """Send ``rate`` records/s, assets in turn, for ``secs`` seconds (bounded by count and
    time); return how many were sent."""
    total = int(rate * secs)
    sent = 0
    start = time.monotonic()
    futs = []
    while sent < total and time.monotonic() - start < secs + 10:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            v = b'{"ID":"bench","VALUE":%d,"TAG":"Bench","TYPE":"Samples","attributes":' % sent
            v += b'{"ts_ns":%d,"ph":%d}}' % (time.time_ns(), ph)
            futs.append(await producer.send(topic, v, key=assets[sent % len(assets)].encode()))
            sent += 1
        if len(futs) > 5000:
            await asyncio.gather(*futs)
            futs.clear()
        await asyncio.sleep(0.002)
    await asyncio.gather(*futs)
    return sent


# ------------------------------------------------------------------ one row, one run


def stack_layout(stack: Stack) -> Layout:
    """The names the stack's processes use, read from their environment as they read it."""
    merged: dict[str, str] = {}
    for c in stack.children:
        merged.update(c.env)
    return Layout.from_env(merged)


async def start_listeners(b: Bench, stack: Stack, urls: list[str]) -> Listeners:
    """The Kafka-only anchor, plus the other hops with --probe."""
    ls = Listeners()
    try:
        await ls.add_kafka("input topic", stack.kafka, [stack.input_topic])
        if b.probe:
            layout = stack_layout(stack)
            derived = await list_topics(stack.kafka, layout.group_topic_prefix)
            await ls.add_kafka("derived topic", stack.kafka, derived)
            await ls.add_nats("JetStream", stack.nats.url, layout.live_republish())
            await ls.add_sse("edge", urls[:SSE_PROBE_ASSETS], 60)
    except BaseException:
        await ls.stop()
        raise
    return ls


async def wait_for_tail(pool: ClientPool, ph: int, expected: int, bound: float) -> bool:
    """Wait until the clients received every event of the phase, at most ``bound`` seconds (a
    shortfall shows in the "delivered" column); return whether they did."""

    async def complete() -> bool:
        return await pool.count(ph) >= expected

    try:
        done: bool = await wait_until(complete, timeout=bound, interval=0.2, what="the tail")
    except AssertionError:
        return False
    return done


async def measure_row(
    b: Bench, stack: Stack, producer: AIOKafkaProducer, factory: Factory, ph: int, clients: int,
    pids: dict[str, int],
) -> RowResult:  # fmt: skip
    """Connect ``clients`` clients, warm the stack up at the rate, then measure one phase."""
    edges = stack.edge_urls
    urls = [
        f"{edges[i % len(edges)]}/asset_stream?asset_uuid={factory.assets[i % b.assets]}"
        for i in range(clients)
    ]
    pool = ClientPool(urls, b.client_procs)
    try:
        await pool.start()
        await produce_phase(producer, stack.input_topic, factory.assets, b.rate, b.warmup_s, 0)
        ls = await start_listeners(b, stack, urls)
        try:
            cpu0 = {n: cpu_seconds(p) for n, p in pids.items()}
            t0 = time.monotonic()
            sent = await produce_phase(
                producer, stack.input_topic, factory.assets, b.rate, b.phase_s, ph
            )
            elapsed = time.monotonic() - t0
            await wait_for_tail(pool, ph, expected_deliveries(sent, clients, b.assets), b.tail_s)
            cpu = {n: cpu_seconds(p) - cpu0[n] for n, p in pids.items()}
        finally:
            await ls.stop()
        hops = {h: lat.get(ph, []) for h, lat in ls.hops.items()}
        hops["client"] = (await pool.collect()).get(ph, [])
    finally:
        await pool.stop()
    return RowResult(
        clients=clients, assets=b.assets, sent=sent, elapsed_s=elapsed, hops=hops, cpu=cpu
    )


async def run_once(b: Bench, run: int, env: dict[str, str]) -> list[RowResult]:
    """One fresh start: servers, Kafka warm-up, stack, then every row."""
    work = Path(tempfile.mkdtemp(prefix="ofa-e2e-bench-"))
    unique = f"b{os.getpid()}r{run}{int(time.time())}"
    async with infra(work) as (kafka, nats, server_pids):
        await warm_kafka(kafka, f"t_e2e_warm_{unique}", 6)
        stack = Stack(kafka, nats, unique, work / "logs", router_mode="redirect", env=env)
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka, acks="all", enable_idempotence=True, linger_ms=1
        )
        try:
            await stack.start()
            await producer.start()
            factory = Factory(b.assets, 4, prefix="BENCH", helpers=False)
            for rec in factory.registration():
                await producer.send_and_wait(stack.input_topic, rec.value, key=rec.key.encode())
            prefix = stack_layout(stack).group_topic_prefix

            async def derived() -> list[str]:
                return await list_topics(kafka, prefix)

            topics: list[str] = await wait_until(derived, timeout=60, what="the derived topics")
            print(f"  run {run + 1}: stack ready, {len(topics)} derived topics", flush=True)
            pids = stack.pids() | server_pids | {"bench": os.getpid()}
            return [
                await measure_row(b, stack, producer, factory, i, n, pids)
                for i, n in enumerate(b.rows, 1)
            ]
        finally:
            await producer.stop()
            await stack.stop()


# ------------------------------------------------------------------ command line


def bridge_knows_openfactory_subjects() -> bool:
    """Whether this checkout's bridge reads BRIDGE_OPENFACTORY_SUBJECTS."""
    from bridge.settings import BridgeSettings

    return "openfactory_subjects" in {f.name for f in msgspec.structs.fields(BridgeSettings)}


async def runs(
    b: Bench, n: int, timeout: float, envs: list[dict[str, str]]
) -> list[list[list[RowResult]]]:
    """``n`` rounds of fresh runs, one per environment in ``envs`` (interleaved, so a drift of
    the machine's load hits every variant alike), each run capped at ``timeout`` seconds;
    result[variant][run][row]."""
    out: list[list[list[RowResult]]] = [[] for _ in envs]
    for r in range(n):
        for v, env in enumerate(envs):
            async with asyncio.timeout(timeout):
                out[v].append(await run_once(b, r, env))
            print(f"  run {r + 1}/{n} done" + (f" ({env})" if env else ""), flush=True)
    return out


async def main_async(b: Bench, args: argparse.Namespace) -> None:
    """Every requested measurement; SIGTERM and Ctrl-C cancel it (and clean up)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    print("\n".join(machine_lines(sys.argv[1:])), flush=True)
    if args.openfactory_cpu:
        variants = await runs(b, args.runs, args.run_timeout_s, [of_env(True), of_env(False)])
        of = {on: [rs[0] for rs in v] for on, v in zip((True, False), variants, strict=True)}
        print_openfactory(of, bridge_knows_openfactory_subjects())
        return
    (results,) = await runs(b, args.runs, args.run_timeout_s, [{}])
    rows = {n: [rs[i] for rs in results] for i, n in enumerate(b.rows)}
    print_rows(rows, b.rate)
    print("\n" + "\n".join(verdict_lines(rows)))
    if b.probe:
        print_budget(rows)
    print_cpu(rows)


def of_env(on: bool) -> dict[str, str]:
    return {"BRIDGE_OPENFACTORY_SUBJECTS": "true" if on else "false"}


def parse() -> tuple[Bench, argparse.Namespace]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", default="100,1000", help="client counts, one row each")
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--rate", type=int, default=1000, help="events/s on the input topic")
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--phase-s", type=float, default=20.0, help="measured seconds per row")
    ap.add_argument("--warmup-s", type=float, default=5.0, help="warm-up seconds per row")
    ap.add_argument(
        "--tail-s", type=float, default=15.0, help="max wait for the last events per row"
    )
    ap.add_argument("--runs", type=int, default=3, help="fresh starts; medians and min-max")
    ap.add_argument("--run-timeout-s", type=float, default=900.0, help="cap per run")
    ap.add_argument("--probe", action="store_true", help="per-hop budget")
    ap.add_argument(
        "--openfactory-cpu",
        action="store_true",
        help="bridge CPU with BRIDGE_OPENFACTORY_SUBJECTS=true vs false (first row only)",
    )
    a = ap.parse_args()
    rows = [int(x) for x in a.rows.split(",") if x.strip()]
    if a.openfactory_cpu:
        rows = rows[:1]
    b = Bench(
        rows=rows,
        assets=a.assets,
        rate=a.rate,
        client_procs=a.client_procs,
        phase_s=a.phase_s,
        warmup_s=a.warmup_s,
        tail_s=a.tail_s,
        probe=a.probe,
    )
    return b, a


def main() -> None:
    b, args = parse()
    try:
        asyncio.run(main_async(b, args))
    except asyncio.CancelledError:
        sys.exit("stopped by a signal; every process started here was stopped")
    except TimeoutError:
        sys.exit(f"a run took longer than --run-timeout-s {args.run_timeout_s:g}; stopped")


if __name__ == "__main__":
    main()
