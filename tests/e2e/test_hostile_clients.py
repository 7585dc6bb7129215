"""Hostile SSE clients against a real edge process, while one well-behaved client follows an
asset: it must receive every event exactly once and in order throughout.

The hostile load, all at the same time:

- thousands of connect/disconnect cycles (normal close, close before the answer, a half-sent
  request, a reset (RST) after the headers), half of them on the well-behaved client's asset;
- clients that never read (tiny receive buffers) on an asset flooded with large events: each
  must be cut off and its socket dropped, its memory released;
- garbage ``Last-Event-ID`` values (header and query): 400 JSON with a ``detail``;
- huge query strings and headers (8 KiB to 1 MiB): refused with a 4xx (JSON where the app
  answers), never a crash and never a disturbance of the other clients.

The edge runs as a subprocess so that its resident memory (``VmRSS``) means something: it must
stay below a stated bound during the attack and come back near its baseline afterwards, and its
``ofa_edge_connections`` gauge must come back to the well-behaved client alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from compose.local_infra import NatsProcess
from tests.edge.procs import EdgeProcess
from tests.edge.publisher import Publisher
from tests.edge.sse_client import SSEConnection, sse_get

GOOD = "GOOD-1"
HOT = "HOT-1"
CYCLES = 6000
CYCLE_CONCURRENCY = 48
NON_READERS = 100
#: Events on the flooded asset, each this large: far beyond a client's queue limit plus the
#: kernel buffers of a client that never reads.
HOT_EVENTS = 1200
HOT_VALUE_BYTES = 16 * 1024
#: Stated memory bounds of the edge process (MB above its baseline).
PEAK_BOUND_MB = 100
SETTLED_BOUND_MB = 30
GARBAGE_IDS = ["abc", "-1", "1.5", "9" * 40, "12abc", "0x10", "1 2", "NaN", "\u00b2"]


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def metric(text: str, name: str) -> float:
    """Value of an unlabelled sample in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} not exposed")


async def wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


class GoodClient:
    """Reads its stream as fast as it comes, recording every event id."""

    def __init__(self, conn: SSEConnection) -> None:
        self.conn = conn
        self.ids: list[int] = []
        self.ended = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            ev = await self.conn.next_event(timeout=3600)
            if ev is None:
                self.ended = True
                return
            if ev.type == "asset_update":
                self.ids.append(int(ev.id))


async def _raw(port: int, request: bytes, mode: str) -> int | None:
    """One hostile connection; the status when ``mode`` reads it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request if mode != "half" else request[: len(request) // 2])
        await writer.drain()
        if mode in ("half", "no_read"):
            return None
        line = await asyncio.wait_for(reader.readline(), 10)
        status = int(line.split()[1])
        if mode == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return status
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def connect_cycles(port: int, n: int) -> dict[str, int]:
    """``n`` short-lived connections, ``CYCLE_CONCURRENCY`` at a time; statuses by mode."""
    rng = random.Random(7)
    sem = asyncio.Semaphore(CYCLE_CONCURRENCY)
    seen: dict[str, int] = {}

    async def one(i: int) -> None:
        asset = GOOD if i % 2 else f"CYCLE-{i % 20}"
        mode = rng.choice(["read", "no_read", "half", "rst"])
        req = (
            f"GET /asset_stream?asset_uuid={asset} HTTP/1.1\r\nHost: x\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        async with sem:
            status = await _raw(port, req, mode)
        key = f"{mode}:{status}"
        seen[key] = seen.get(key, 0) + 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return seen


async def garbage_last_event_ids(base: str) -> None:
    """Every garbage id, as header and as query parameter: 400 JSON with a detail."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        for raw in GARBAGE_IDS:
            answers = []
            if raw.isascii():
                answers.append(
                    await c.get(f"/asset_stream?asset_uuid={GOOD}", headers={"Last-Event-ID": raw})
                )
            answers.append(
                await c.get(f"/asset_stream?asset_uuid={GOOD}&last_event_id={quote(raw)}")
            )
            for r in answers:
                assert r.status_code == 400, (raw, r.status_code, r.text[:200])
                assert r.headers["content-type"].startswith("application/json")
                assert "Last-Event-ID" in r.json()["detail"], r.text


async def huge_requests(port: int) -> list[tuple[str, int | None]]:
    """Huge query strings and headers: a 4xx (JSON when the app answers), never a 2xx/5xx;
    headers beyond EDGE_MAX_HEADER_BYTES get the edge's own 431 JSON."""
    out: list[tuple[str, int | None]] = []
    for size in (8 * 1024, 64 * 1024, 1024 * 1024):
        cases = {
            f"asset_uuid {size}": (f"/asset_stream?asset_uuid={'A' * size}", ""),
            f"header {size}": (f"/asset_stream?asset_uuid={GOOD}", f"X-Pad: {'y' * size}\r\n"),
        }
        if size > 8 * 1024:
            cases[f"query pad {size}"] = (f"/asset_stream?asset_uuid={GOOD}&pad={'x' * size}", "")
        for name, (target, extra) in cases.items():
            req = f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()
            status, headers, body = await _answer(port, req)
            out.append((name, status))
            if name.startswith("header"):
                # 16 KiB is the edge's default EDGE_MAX_HEADER_BYTES.
                assert status == (431 if size > 16 * 1024 else 200), (name, status, body[:200])
                if status == 200:
                    continue
            assert status is None or 400 <= status < 500, (name, status, body[:200])
            # A server that refuses before reading a 1 MiB request and closes makes the kernel
            # reset the connection (unread data), which can cut the answer's body short: judge
            # the JSON only when the whole body arrived (Content-Length).
            complete = len(body) == int(headers.get("content-length", len(body)))
            if (
                status is not None
                and complete
                and headers.get("content-type", "").startswith("application/json")
            ):
                assert json.loads(body)["detail"], (name, body[:200])
    return out


async def _answer(port: int, request: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """Send ``request``; the answer's status, headers and body (None when the server hangs up
    without an answer, which is also an acceptable refusal)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(request)
            await writer.drain()
        try:
            raw = await asyncio.wait_for(reader.read(64 * 1024), 10)
        except ConnectionError:
            return None, {}, b""
        if not raw:
            return None, {}, b""
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        return int(lines[0].split()[1]), headers, body
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def test_hostile_clients_do_not_disturb_a_good_one(
    nats_private: NatsProcess, tmp_path: Path
) -> None:
    pub = await Publisher.connect(nats_private.url)
    edge = EdgeProcess(
        nats_private.url,
        tmp_path,
        EDGE_MAX_NEW_CONNECTIONS_PER_S="0",  # every cycle really opens a stream
        EDGE_CLOSE_GRACE_S="1",
        EDGE_PING_INTERVAL_S="1",
    )
    good: GoodClient | None = None
    non_readers: list[SSEConnection] = []
    try:
        await edge.start()
        pid = edge.pid
        base = edge.url
        conn = await sse_get(f"{base}/asset_stream?asset_uuid={GOOD}")
        assert conn.status == 200
        good = GoodClient(conn)
        # `retry:` comes once the live subscription is confirmed; later events must all arrive.
        await wait_for(lambda: _true(conn.parser.retry is not None), 10, "subscription")
        published: list[int] = [await pub.publish(GOOD, "Temp", -1)]
        await wait_for(lambda: _true(good is not None and len(good.ids) == 1), 10, "first event")
        baseline = rss_mb(pid)

        peak = baseline
        stop_sampling = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop_sampling.is_set():
                peak = max(peak, rss_mb(pid))
                await asyncio.sleep(0.05)

        async def steady_flow() -> None:
            i = 0
            while not stop_sampling.is_set():
                published.append(await pub.publish(GOOD, "Temp", i))
                i += 1
                await asyncio.sleep(0.005)

        for _ in range(NON_READERS):
            non_readers.append(await sse_get(f"{base}/asset_stream?asset_uuid={HOT}", rcvbuf=4096))
        assert all(c.status == 200 for c in non_readers)

        async def flood() -> None:
            big = "z" * HOT_VALUE_BYTES
            for i in range(HOT_EVENTS):
                await pub.publish(HOT, "Blob", f"{i}:{big}")

        sampler = asyncio.create_task(sample())
        flow = asyncio.create_task(steady_flow())
        started = time.monotonic()
        cycles, _, huge, _ = await asyncio.gather(
            connect_cycles(edge.port, CYCLES),
            garbage_last_event_ids(base),
            huge_requests(edge.port),
            flood(),
        )
        attack_s = time.monotonic() - started
        print(f"\nattack {attack_s:.1f}s cycles={cycles} huge={huge}")
        assert cycles.get("read:200", 0) + cycles.get("rst:200", 0) > CYCLES // 3, cycles
        assert not [k for k in cycles if k.startswith(("read:", "rst:")) and k[-3:] != "200"]

        async with httpx.AsyncClient(base_url=base, timeout=10) as c:

            async def hostile_gone() -> bool:
                text = (await c.get("/metrics")).text
                return metric(text, "ofa_edge_connections") == 1.0

            # Non-readers are cut (queue over its limit) and their sockets dropped after the
            # grace period, although they still hold them open.
            await wait_for(hostile_gone, 30, "only the good client left")
            text = (await c.get("/metrics")).text
            cuts = metric(text, "ofa_edge_slow_client_cuts_total")
            assert cuts >= NON_READERS, text
            assert (await c.get("/health")).status_code == 200

        stop_sampling.set()
        await flow
        await sampler
        published.append(await pub.publish(GOOD, "Temp", "last"))
        await wait_for(
            lambda: _true(len(good.ids) >= len(published) or good.ended), 20, "all good events"
        )
        assert not good.ended, "the good client's stream ended"
        assert good.ids == published, (len(good.ids), len(published))

        # Memory comes back near the baseline once the hostile clients are gone.
        settled = rss_mb(pid)
        deadline = time.monotonic() + 10
        while settled > baseline + SETTLED_BOUND_MB and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            settled = rss_mb(pid)
        print(
            f"edge RSS MB: baseline {baseline:.1f} peak {peak:.1f} settled {settled:.1f}; "
            f"good client got {len(good.ids)} events in order; slow cuts {cuts:.0f}"
        )
        assert peak <= baseline + PEAK_BOUND_MB, (baseline, peak)
        assert settled <= baseline + SETTLED_BOUND_MB, (baseline, settled)
        assert edge.returncode is None, "edge died"
    finally:
        for c in non_readers:
            await c.close()
        if good is not None:
            good.task.cancel()
            await good.conn.close()
        await edge.stop()
        await pub.close()


async def _true(value: bool) -> bool:
    return value
