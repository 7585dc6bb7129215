"""One edge against Centrifugo v6.9.1, side by side, same load client, same machine, same minute.

    .venv/bin/python -m bench.edge_vs_centrifugo [--runs 3] [--seconds 20]
        [--parts fanout,rss,capacity] [--no-centrifugo] [--edge-env EDGE_X=v]

Fan-out (issue 12, goal 2): 1,000 SSE clients over 100 assets (10 per asset), 1k events/s spread
evenly over the assets (10k deliveries/s, nothing coalesces), ``--seconds`` measured after a
warm-up; the edge and Centrifugo take turns within each run (the order alternates), and the
ratios are taken per run, then their median. Latency is publish -> parsed by the client (wall
clock carried in the payload): the edge's path is NATS publish -> JetStream (RePublish) -> edge,
Centrifugo's the HTTP publish API -> Centrifugo (in-memory history on).

CPU per delivery net of intake: each run first drives the same events to 100 clients (one per
asset), then to 1,000. With cpu = I * events + D * deliveries in both phases, the per-delivery
cost is D = (cpu_1000 / events_1000 - cpu_100 / events_100) / 9: receiving, storing and
decoding each event (intake) cancels out. CPU is utime+stime of the server process only.

RSS: idle resident memory per SSE connection with 10k connections (fresh servers, 100 warm-up
connections first). Capacity: the highest deliveries/s one edge (and, for comparison, one
Centrifugo) sustains with 1,000 clients over 100 assets and p99 <= 50 ms, every event
delivered (a ladder of publish rates; two failed rungs in a row end it).

Clients run in a separate process (bench/sse_load.py, uvloop); the publisher and the
measurements in this one. Everything shares the machine's cores with whatever else runs: the
ratios from the same run are the result, absolute figures are noise (the load average is
printed). Centrifugo is built from the Go module proxy when missing (bench/centrifugo.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats

from bench.centrifugo import ApiPublisher, Centrifugo, CentrifugoMissing, ensure_binary
from bench.common import run_fast
from bench.edge_bench import make_stream, raise_nofile, rss_kb, start_edge, stop_edge
from compose.local_infra import NatsProcess, free_port, private_config
from tests.e2e.stack import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
ASSETS = [f"A{i:03d}" for i in range(100)]
PAD = b"x" * 120
P99_GOAL_MS = 50.0


@dataclass
class Target:
    """A server under test, as the load driver sees it."""

    name: str
    pid: int
    ready: str
    url_of: Callable[[str], str]
    publish: Callable[[str, bytes], Awaitable[None]]
    flush: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


@dataclass
class Phase:
    """One measured phase."""

    events: int
    delivered: int
    expected: int
    p50: float
    p99: float
    max: float
    cpu: float
    wall: float


class LoadClient:
    """The load client subprocess (bench/sse_load.py), one JSON command per line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> LoadClient:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.sse_load",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        return cls(proc)

    async def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(msgspec.json.encode(cmd) + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load client died answering {cmd['cmd']}")
        out: dict[str, Any] = msgspec.json.decode(line)
        return out

    async def open(self, target: Target, assets: list[str]) -> None:
        await self.call(cmd="open", urls=[target.url_of(a) for a in assets], ready=target.ready)

    async def quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b'{"cmd":"quit"}\n')
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def payload(phase: int) -> bytes:
    return b'{"ID":"d","VALUE":"%s","ts":%d,"ph":%d}' % (PAD, time.time_ns(), phase)


async def drive(target: Target, rate: float, seconds: float, phase: int) -> int:
    """Publish ``rate`` events/s round-robin over the assets for ``seconds``; events sent."""
    t0 = time.monotonic()
    sent = 0
    while (el := time.monotonic() - t0) < seconds:
        due = int(el * rate)
        while sent < due:
            await target.publish(ASSETS[sent % len(ASSETS)], payload(phase))
            sent += 1
        await asyncio.sleep(0.001)
    await target.flush()
    return sent


async def measure(
    target: Target, client: LoadClient, rate: float, seconds: float, per_asset: int, phase: int
) -> Phase:
    """A warm-up, then one measured phase: deliveries, latency, server CPU."""
    await drive(target, rate, min(3.0, seconds / 3), 0)
    await client.call(cmd="phase", phase=phase)
    cpu0, t0 = cpu_seconds(target.pid), time.monotonic()
    sent = await drive(target, rate, seconds, phase)
    expected = sent * per_asset
    deadline = time.monotonic() + 15
    while True:
        st = await client.call(cmd="stats")
        if st["deliveries"] >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    cpu, wall = cpu_seconds(target.pid) - cpu0, time.monotonic() - t0
    p50, p99, mx = (float("nan") if x is None else float(x) for x in st["lat_ms"])
    return Phase(sent, st["deliveries"], expected, p50, p99, mx, cpu, wall)


def net_cpu_per_1k(intake: Phase, full: Phase, fan: int) -> float:
    """CPU-s per 1k deliveries with the per-event (intake) cost cancelled out."""
    per_event = full.cpu / full.events - intake.cpu / intake.events
    return 1000 * per_event / (fan - 1)


async def fanout_run(target: Target, client: LoadClient, a: argparse.Namespace) -> dict[str, float]:
    """100 clients (intake phase), then 1,000 (measured): the numbers of one run."""
    await client.open(target, ASSETS)
    intake = await measure(target, client, a.rate, a.intake_seconds, 1, 1)
    await client.open(target, ASSETS * (a.clients // len(ASSETS) - 1))
    fan = a.clients // len(ASSETS)
    full = await measure(target, client, a.rate, a.seconds, fan, 2)
    await client.call(cmd="close")
    if full.delivered < full.expected or intake.delivered < intake.expected:
        print(f"    {target.name}: only {full.delivered}/{full.expected} deliveries arrived")
    out = {
        "p50": full.p50,
        "p99": full.p99,
        "max": full.max,
        "deliveries_s": full.delivered / full.wall,
        "cpu_1k": net_cpu_per_1k(intake, full, fan),
        "gross_cpu_1k": 1000 * full.cpu / max(1, full.delivered),
        "complete": float(full.delivered >= full.expected),
    }
    print(
        f"    {target.name:10s} p50 {out['p50']:7.1f} ms  p99 {out['p99']:7.1f} ms  "
        f"max {out['max']:7.1f} ms  {out['deliveries_s']:8,.0f} deliveries/s  "
        f"net {out['cpu_1k']:.4f} CPU-s/1k (gross {out['gross_cpu_1k']:.4f})",
        flush=True,
    )
    return out


async def rss_run(target: Target, client: LoadClient, n: int) -> float:
    """Idle RSS per connection (KB) at ``n`` connections."""
    await client.open(target, ASSETS)
    await asyncio.sleep(1)
    before = rss_kb(target.pid)
    await client.open(target, [ASSETS[i % len(ASSETS)] for i in range(n)])
    await asyncio.sleep(3)
    after = rss_kb(target.pid)
    await client.call(cmd="close")
    return (after - before) / n


async def capacity(target: Target, client: LoadClient, a: argparse.Namespace) -> float:
    """Highest deliveries/s with p99 <= 50 ms and nothing missing, over a ladder of rates
    (the delivered rate of the best passing rung)."""
    fan = a.clients // len(ASSETS)
    await client.open(target, ASSETS * fan)
    best = 0.0
    fails = 0
    for i, rate in enumerate(a.ladder):
        ph = await measure(target, client, rate, a.capacity_seconds, fan, 10 + i)
        ok = ph.p99 <= P99_GOAL_MS and ph.delivered >= ph.expected
        print(
            f"    {rate * fan:>7,} deliveries/s offered: p50 {ph.p50:.1f} ms, p99 {ph.p99:.1f} "
            f"ms, {ph.delivered}/{ph.expected} delivered -> {'ok' if ok else 'FAIL'}",
            flush=True,
        )
        # Two failed rungs in a row end the ladder: one can be a hiccup of a shared machine.
        fails = 0 if ok else fails + 1
        if ok:
            best = max(best, ph.delivered / ph.wall)
        elif fails == 2:
            break
    await client.call(cmd="close")
    return best


# ---------------------------------------------------------------- the servers


async def edge_target(nats_url: str, work: Path, name: str = "edge", **env: str) -> Target:
    port = free_port()
    proc = await asyncio.to_thread(start_edge, nats_url, port, work / f"edge-{port}.log", **env)
    nc = await nats.connect(nats_url, pending_size=64 * 1024 * 1024)

    async def publish(asset: str, data: bytes) -> None:
        await nc.publish(f"ofa.asset.{asset}.d", data)

    async def stop() -> None:
        await nc.close()
        await stop_edge(proc, "bench")

    return Target(
        name,
        proc.pid,
        "retry:",
        lambda a: f"http://127.0.0.1:{port}/asset_stream?asset_uuid={a}",
        publish,
        nc.flush,
        stop,
    )


async def centrifugo_target(binary: Path, work: Path) -> Target:
    server = await asyncio.to_thread(Centrifugo(binary, free_port(), work).start)
    assert server.proc is not None
    pub = ApiPublisher(server.port)
    await pub.start()

    async def publish(asset: str, data: bytes) -> None:
        pub.publish(asset, data)

    async def stop() -> None:
        await pub.close()
        if pub.errors:
            print(f"    WARNING: {pub.errors} Centrifugo publish requests failed")
        await asyncio.to_thread(server.stop)

    return Target(
        "centrifugo", server.proc.pid, '"connect"', server.stream_url, publish, pub.flush, stop
    )


# ---------------------------------------------------------------- report


def spread(xs: list[float], fmt: str) -> str:
    """Median and range of the runs."""
    return f"{format(statistics.median(xs), fmt)} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"


def report_fanout(runs: list[dict[str, dict[str, float]]]) -> None:
    """Medians and spreads per server, and the per-run ratios edge / Centrifugo."""
    print("\nFAN-OUT 1,000 clients / 100 assets, 10k deliveries/s: median (min-max) of runs")
    for name in runs[0]:
        rs = [r[name] for r in runs]
        print(
            f"  {name:10s} p50 {spread([r['p50'] for r in rs], '.1f')} ms, "
            f"p99 {spread([r['p99'] for r in rs], '.1f')} ms, "
            f"net CPU {spread([r['cpu_1k'] for r in rs], '.4f')} CPU-s/1k deliveries, "
            f"gross {spread([r['gross_cpu_1k'] for r in rs], '.4f')}"
        )
    for name in [n for n in runs[0] if n.startswith("edge")]:
        if "centrifugo" not in runs[0]:
            break
        ratios = {
            k: [r[name][k] / r["centrifugo"][k] for r in runs] for k in ("p50", "p99", "cpu_1k")
        }
        print(
            f"  {name} / centrifugo, per run then median: "
            f"p50 {spread(ratios['p50'], '.2f')}x, p99 {spread(ratios['p99'], '.2f')}x "
            f"(goal <= 2), net CPU {spread(ratios['cpu_1k'], '.2f')}x (goal <= 1.2)"
        )
        p99_ok = statistics.median(ratios["p99"]) <= 2
        cpu_ok = statistics.median(ratios["cpu_1k"]) <= 1.2
        verdict = {True: "MET", False: "NOT MET"}
        print(f"  VERDICT {name}: p99 {verdict[p99_ok]}, net CPU {verdict[cpu_ok]}")


async def with_target(
    make: Callable[[], Awaitable[Target]], body: Callable[[Target], Awaitable[Any]]
) -> Any:
    target = await make()
    try:
        return await body(target)
    finally:
        await target.stop()


async def main_async(a: argparse.Namespace) -> None:
    raise_nofile()
    binary = None
    if not a.no_centrifugo:
        try:
            binary = await asyncio.to_thread(ensure_binary)
        except CentrifugoMissing as exc:
            print(f"NOTE: {exc}")
    work = Path(tempfile.mkdtemp(prefix="edge-vs-cent-"))
    natsp = NatsProcess(private_config(work))
    natsp.start()
    await natsp.wait_ready()
    await (await make_stream(natsp.url)).close()
    client = await LoadClient.start()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
        f"Python {sys.version.split()[0]}; work dir {work}"
    )

    def env(pairs: list[str]) -> dict[str, str]:
        return dict(kv.split("=", 1) for kv in pairs)

    makers: dict[str, Callable[[], Awaitable[Target]]] = {
        "edge": lambda: edge_target(natsp.url, work, **env(a.edge_env))
    }
    if a.compare_env:
        makers["edge-b"] = lambda: edge_target(natsp.url, work, "edge-b", **env(a.compare_env))
    if binary is not None:
        makers["centrifugo"] = lambda: centrifugo_target(binary, work)
    try:
        await run_parts(a, client, makers)
    finally:
        print(f"load average {os.getloadavg()[0]:.1f} at the end (2 cores shared with others)")
        await client.quit()
        natsp.stop()


async def run_parts(
    a: argparse.Namespace, client: LoadClient, makers: dict[str, Callable[[], Awaitable[Target]]]
) -> None:
    """The parts asked for, each server in turn (the order alternates between runs)."""
    parts = a.parts.split(",")
    if "fanout" in parts:
        runs: list[dict[str, dict[str, float]]] = []
        for r in range(a.runs):
            print(f"  run {r + 1}/{a.runs}", flush=True)
            order = list(makers.items())
            res: dict[str, dict[str, float]] = {}
            for name, mk in order if r % 2 == 0 else order[::-1]:
                res[name] = await with_target(mk, lambda t: fanout_run(t, client, a))
            runs.append({n: res[n] for n in makers})
        report_fanout(runs)
    if "rss" in parts:
        for name, mk in makers.items():
            kbs = [
                await with_target(mk, lambda t: rss_run(t, client, a.rss_connections))
                for _ in range(a.rss_runs)
            ]
            print(
                f"RSS idle per connection at {a.rss_connections:,}: {name} "
                f"{spread(kbs, '.1f')} KB (median (min-max) of {len(kbs)} fresh servers)",
                flush=True,
            )
    if "capacity" in parts:
        print("CAPACITY (1,000 clients / 100 assets, p99 <= 50 ms, nothing missing)")
        for name in a.capacity_of.split(","):
            if name in makers:
                print(f"  {name}:", flush=True)
                best = await with_target(makers[name], lambda t: capacity(t, client, a))
                print(f"CAPACITY {name}: {best:,.0f} deliveries/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds at 1,000 clients")
    ap.add_argument("--intake-seconds", type=float, default=10.0, help="measured s at 100 clients")
    ap.add_argument("--rate", type=float, default=1000.0, help="published events/s")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--parts", default="fanout,rss,capacity")
    ap.add_argument("--rss-connections", type=int, default=10_000)
    ap.add_argument("--rss-runs", type=int, default=2)
    ap.add_argument("--capacity-seconds", type=float, default=10.0)
    ap.add_argument("--capacity-of", default="edge,centrifugo", help="servers given a capacity")
    ap.add_argument(
        "--ladder",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[50, 100, 250, 500, 1000, 1500, 2000, 3000, 4000],
        help="published events/s tried for the capacity (x clients per asset)",
    )
    ap.add_argument("--edge-env", action="append", default=[], help="EDGE_X=value for the edge")
    ap.add_argument(
        "--compare-env",
        action="append",
        default=[],
        help="EDGE_X=value: also run a second edge ('edge-b') with these, for before/after",
    )
    ap.add_argument("--no-centrifugo", action="store_true", help="edge only")
    a = ap.parse_args()
    run_fast(main_async(a))


if __name__ == "__main__":
    main()
