"""Edge benchmark: fan-out throughput/latency, idle RSS per connection, mass resume time.

    .venv/bin/python bench/edge_bench.py [--runs 3] [--parts fanout,rss,resume]

Starts its own nats-server and edge subprocess (`python -m compose.cli edge`); clients run in
this process on uvloop, reading raw HTTP/1.1 (events counted by their `id:` lines). Everything
shares the machine's cores, so the numbers are floors. Prints medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nats
from nats.js.api import RePublish, StreamConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import run_fast  # noqa: E402
from compose.local_infra import NatsProcess, free_port, private_config  # noqa: E402

ID_RE = re.compile(rb"id: (\d+)\n")
TS_RE = re.compile(rb'"ts":([0-9.]+)')


def raise_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class SSEProto(asyncio.Protocol):
    """Counts events; optionally records ids and latency (payload carries a send timestamp)."""

    def __init__(self, req: bytes, keep_ids: bool, lat: list[float] | None) -> None:
        self.req = req
        self.keep_ids = keep_ids
        self.lat = lat
        self.buf = b""
        self.count = 0
        self.ids: list[int] = []
        self.last_id = 0
        self.connected = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.subscribed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.req)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.buf = buf
            return
        done, self.buf = buf[: cut + 2], buf[cut + 2 :]
        if not self.subscribed and b"retry:" in done:
            self.subscribed = True
            if not self.connected.done():
                self.connected.set_result(None)
        if self.keep_ids or self.lat is not None:
            ids = ID_RE.findall(done)
            if ids:
                self.last_id = int(ids[-1])
                if self.keep_ids:
                    self.ids.extend(int(i) for i in ids)
            if self.lat is not None:
                now = time.time()
                self.lat.extend(now - float(t) for t in TS_RE.findall(done))
            self.count += len(ids)
        else:
            n = done.count(b"\nid: ") + done.startswith(b"id: ")
            self.count += n

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before subscribed"))
        if not self.closed.done():
            self.closed.set_result(None)


async def open_client(
    port: int,
    asset: str,
    keep_ids: bool = False,
    lat: list[float] | None = None,
    last_id: int | None = None,
) -> SSEProto:
    hdr = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
    req = (f"GET /asset_stream?asset_uuid={asset} HTTP/1.1\r\nHost: x\r\n{hdr}\r\n").encode()
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: SSEProto(req, keep_ids, lat), "127.0.0.1", port)
    return proto


async def open_many(port: int, assets: list[str], n: int, **kw) -> list[SSEProto]:
    sem = asyncio.Semaphore(200)

    async def one(i: int) -> SSEProto:
        async with sem:
            for _ in range(50):
                try:
                    p = await open_client(port, assets[i % len(assets)], **kw)
                    await asyncio.wait_for(p.connected, 30)
                    return p
                except (OSError, ConnectionError, TimeoutError):
                    await asyncio.sleep(0.2)
            raise RuntimeError("could not open a client")

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def start_edge(nats_url: str, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    e = dict(
        os.environ,
        NATS_URL=nats_url,
        EDGE_PORT=str(port),
        LOG_FORMAT="text",
        LOG_LEVEL="WARNING",
        EDGE_MAX_NEW_CONNECTIONS_PER_S="0",
        EDGE_MAX_CONNECTIONS="30000",
        **env,
    )
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "compose.cli", "edge"],
            cwd=ROOT,
            env=e,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"edge did not become ready: {log.read_text()[-1500:]}")


async def stop_edge(proc: subprocess.Popen[bytes], what: str) -> None:
    """SIGTERM, waiting without blocking the clients' event loop; kill -9 if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, 60)
    except subprocess.TimeoutExpired:
        print(f"  WARNING: {what} edge did not exit within 60 s of SIGTERM; killed", flush=True)
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def make_stream(url: str) -> nats.NATS:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name="OFA_ASSETS",
            subjects=["ofa.asset.>"],
            republish=RePublish(src="ofa.asset.>", dest="asset.>"),
            duplicate_window=120.0,
        )
    )
    return nc


async def fanout_run(
    nats_url: str, work: Path, seconds: float, rate: int
) -> tuple[float, float, float]:
    port = free_port()
    edge = start_edge(nats_url, port, work / "edge-fanout.log", EDGE_CLIENT_QUEUE_BYTES="4194304")
    nc = await nats.connect(nats_url)
    try:
        assets = [f"B{i}" for i in range(100)]
        lat: list[float] = []
        clients = await open_many(port, assets, 900)
        clients += await open_many(port, assets, 100, lat=lat)  # one latency probe per asset
        pad = "x" * 120
        t0 = time.monotonic()
        sent = 0
        while (el := time.monotonic() - t0) < seconds:
            target = int(el * rate)
            while sent < target:
                a = assets[sent % 100]
                await nc.publish(
                    f"ofa.asset.{a}.d{sent % 7}",
                    b'{"ID":"d","VALUE":"%s","ts":%.6f}' % (pad.encode(), time.time()),
                )
                sent += 1
            await asyncio.sleep(0.002)
        await nc.flush()
        expected = sent * 10
        deadline = time.monotonic() + 30
        while sum(c.count for c in clients) < expected and time.monotonic() < deadline:  # noqa: ASYNC110 - polls counters
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        got = sum(c.count for c in clients)
        lat.sort()
        p50 = lat[len(lat) // 2] if lat else float("nan")
        p99 = lat[int(len(lat) * 0.99)] if lat else float("nan")
        if got < expected:
            print(f"  fan-out: only {got}/{expected} deliveries arrived", flush=True)
        for c in clients:
            c.transport.close()
        return got / elapsed, p50 * 1000, p99 * 1000
    finally:
        await nc.close()
        await stop_edge(edge, "fan-out")


async def rss_run(nats_url: str, work: Path, n: int) -> float:
    port = free_port()
    edge = start_edge(nats_url, port, work / "edge-rss.log", EDGE_GC_FREEZE="true")
    try:
        assets = [f"R{i}" for i in range(100)]
        warm = await open_many(port, assets, 100)  # subscriptions and code paths warmed
        await asyncio.sleep(1)
        before = rss_kb(edge.pid)
        clients = await open_many(port, assets, n)
        await asyncio.sleep(2)
        after = rss_kb(edge.pid)
        for c in clients + warm:
            c.transport.close()
        return (after - before) / n
    finally:
        await stop_edge(edge, "rss")


async def resume_run(nats_url: str, work: Path, n: int) -> tuple[float, bool]:
    port = free_port()
    log = work / "edge-resume.log"
    edge = start_edge(nats_url, port, log)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    tag = f"M{time.monotonic_ns() % 10**8}"
    assets = [f"{tag}x{i}" for i in range(100)]
    per_asset: dict[str, list[int]] = {a: [] for a in assets}
    try:
        clients = await open_many(port, assets, n, keep_ids=True)
        for r in range(3):
            for a in assets:
                ack = await js.publish(f"ofa.asset.{a}.v", b'{"ID":"v","VALUE":%d}' % r)
                per_asset[a].append(ack.seq)
        deadline = time.monotonic() + 60
        while any(len(c.ids) < 3 for c in clients) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls counters
            await asyncio.sleep(0.05)
        await stop_edge(edge, "resume (first)")
        await asyncio.gather(*(c.closed for c in clients))
        for r in range(5):  # missed while no edge runs
            for a in assets:
                ack = await js.publish(f"ofa.asset.{a}.v", b'{"ID":"v","VALUE":%d}' % (10 + r))
                per_asset[a].append(ack.seq)
        edge = start_edge(nats_url, port, log)
        t0 = time.monotonic()
        again = []
        sem = asyncio.Semaphore(500)

        async def reconnect(i: int, c: SSEProto) -> SSEProto:
            async with sem:
                while True:
                    try:
                        p = await open_client(
                            port, assets[i % 100], keep_ids=True, last_id=c.ids[-1]
                        )
                        p.ids = list(c.ids)
                        await asyncio.wait_for(p.connected, 60)
                        return p
                    except (OSError, ConnectionError, TimeoutError):
                        await asyncio.sleep(0.2)

        again = await asyncio.gather(*(reconnect(i, c) for i, c in enumerate(clients)))
        deadline = time.monotonic() + 120
        while any(len(c.ids) < 8 for c in again) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls counters
            await asyncio.sleep(0.05)
        took = time.monotonic() - t0
        ok = all(c.ids == per_asset[assets[i % 100]] for i, c in enumerate(again))
        for c in again:
            c.transport.close()
        return took, ok
    finally:
        await nc.close()
        await stop_edge(edge, "resume")


async def main_async(args: argparse.Namespace) -> None:
    hard = raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    cfg = private_config(work)
    natsp = NatsProcess(cfg)
    natsp.start()
    await natsp.wait_ready()
    nc = await make_stream(natsp.url)
    await nc.close()
    parts = args.parts.split(",")
    print(f"machine: {os.cpu_count()} CPUs, nofile limit {hard}, Python {sys.version.split()[0]}")
    try:
        if "fanout" in parts:
            res = [
                await fanout_run(natsp.url, work, args.seconds, args.rate) for _ in range(args.runs)
            ]
            for r in res:
                print(
                    f"  fan-out run: {r[0]:,.0f} deliveries/s, p50 {r[1]:.1f} ms, p99 {r[2]:.1f} ms"
                )
            print(
                f"FANOUT 1000 clients/100 assets, offered {args.rate * 10:,}/s: median "
                f"{statistics.median(r[0] for r in res):,.0f} deliveries/s, "
                f"p50 {statistics.median(r[1] for r in res):.1f} ms, "
                f"p99 {statistics.median(r[2] for r in res):.1f} ms",
                flush=True,
            )
        if "rss" in parts:
            for n in (10_000, min(20_000, hard - 500)):
                res2 = [await rss_run(natsp.url, work, n) for _ in range(args.runs)]
                print(
                    f"RSS idle per connection at {n:,}: median {statistics.median(res2):.1f} KB "
                    f"(runs {', '.join(f'{x:.1f}' for x in res2)})",
                    flush=True,
                )
        if "resume" in parts:
            res3 = [
                await resume_run(natsp.url, work, args.resume_clients) for _ in range(args.runs)
            ]
            print(
                f"RESUME {args.resume_clients:,} clients after edge restart: median "
                f"{statistics.median(r[0] for r in res3):.2f} s "
                f"(runs {', '.join(f'{r[0]:.2f}' for r in res3)}), gap-free: "
                f"{all(r[1] for r in res3)}",
                flush=True,
            )
    finally:
        natsp.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parts", default="fanout,rss,resume")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=int, default=12_000, help="published events/s (x10 clients)")
    ap.add_argument("--resume-clients", type=int, default=10_000)
    args = ap.parse_args()
    run_fast(main_async(args))


if __name__ == "__main__":
    main()
