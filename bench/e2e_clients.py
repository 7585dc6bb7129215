"""SSE load clients of the end-to-end benchmark.

Each client is a raw HTTP/1.0 socket (so the load generator is not the bottleneck) that reads an
edge's ``/asset_stream`` and records, per phase, the latency of every event from the ``ts_ns``
the producer stamped into the record to the moment the client parsed it. Many clients run in a
few separate processes (``python -m bench.e2e_clients URL...``) driven by `ClientPool`:
the child prints ``READY`` once every stream is live, waits for a line on stdin, then prints its
latencies as one JSON line ``{"<phase>": [ms, ...]}`` and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time

import msgspec

#: Phase-tagged latencies in milliseconds.
Latencies = dict[int, list[float]]

TS_RE = re.compile(rb'"ts_ns":(\d+),"ph":(\d+)')
#: Seconds a client process gets to open its streams, and to hand its numbers over.
READY_TIMEOUT_S = 180.0
REPORT_TIMEOUT_S = 120.0


def record_latencies(blob: bytes, now_ns: int, lat: Latencies) -> int:
    """Add the latency of every stamped event in ``blob``; return how many were found."""
    n = 0
    for m in TS_RE.finditer(blob):
        lat.setdefault(int(m.group(2)), []).append((now_ns - int(m.group(1))) / 1e6)
        n += 1
    return n


async def sse_client(url: str, lat: Latencies, live: asyncio.Event) -> None:
    """Read one SSE stream until the connection ends; ``live`` is set on the first frame."""
    host, _, rest = url.removeprefix("http://").partition("/")
    h, _, port = host.partition(":")
    reader, writer = await asyncio.open_connection(h, int(port), limit=1 << 20)
    try:
        writer.write(
            f"GET /{rest} HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"{url}: {head[:200]!r}")
        buf = b""
        while data := await reader.read(65536):
            now = time.time_ns()
            buf += data
            if not live.is_set() and b"retry:" in buf:
                live.set()
            cut = buf.rfind(b"\n\n")
            if cut >= 0:
                record_latencies(buf[: cut + 2], now, lat)
                buf = buf[cut + 2 :]
    finally:
        writer.close()


async def open_clients(urls: list[str], lat: Latencies, timeout: float) -> list[asyncio.Task[None]]:
    """Open one stream per URL (paced under the edges' new-connection rate limit) and wait
    until every one is live; a client that fails raises here."""
    tasks: list[asyncio.Task[None]] = []
    lives: list[asyncio.Event] = []
    for i, u in enumerate(urls, 1):
        lives.append(asyncio.Event())
        tasks.append(asyncio.create_task(sse_client(u, lat, lives[-1])))
        if i % 50 == 0:
            await asyncio.sleep(0.05)
    waits = [asyncio.create_task(e.wait()) for e in lives]
    try:
        async with asyncio.timeout(timeout):
            for w, t in zip(waits, tasks, strict=True):
                await asyncio.wait([w, t], return_when=asyncio.FIRST_COMPLETED)
                if t.done():
                    t.result()  # raises the client's error
                    raise RuntimeError("an SSE stream ended before it went live")
    except BaseException:
        await close_clients(tasks)
        raise
    finally:
        for w in waits:
            w.cancel()
    return tasks


async def close_clients(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel client tasks and wait for them."""
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(BaseException):
            await t


async def client_main(urls: list[str]) -> None:
    """The client process: open, say READY, then answer stdin lines: ``count <phase>`` with
    the events received so far in that phase, an empty line with every latency (then exit)."""
    lat: Latencies = {}
    tasks = await open_clients(urls, lat, READY_TIMEOUT_S)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    while (line := await loop.run_in_executor(None, sys.stdin.readline)).startswith("count "):
        sys.stdout.write(f"{len(lat.get(int(line.split()[1]), []))}\n")
        sys.stdout.flush()
    await close_clients(tasks)
    sys.stdout.write(msgspec.json.encode({str(k): v for k, v in lat.items()}).decode() + "\n")
    sys.stdout.flush()


def expected_deliveries(sent: int, clients: int, assets: int) -> int:
    """Events the clients of a phase should receive when ``sent`` records went to the assets in
    turn and client ``i`` reads asset ``i % assets``."""
    if assets <= 0:
        return 0
    per_asset = [sent // assets + (1 if a < sent % assets else 0) for a in range(assets)]
    return sum(per_asset[i % assets] for i in range(clients))


class ClientPool:
    """``len(urls)`` SSE clients spread over ``procs`` child processes."""

    def __init__(self, urls: list[str], procs: int) -> None:
        per = max(1, -(-len(urls) // max(1, procs)))
        self._chunks = [urls[i : i + per] for i in range(0, len(urls), per)]
        self._procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        """Spawn the client processes and wait until every stream is live."""
        for chunk in self._chunks:
            self._procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.e2e_clients",
                    *chunk,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 28,
                )
            )
        for p in self._procs:
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), READY_TIMEOUT_S + 10)
            if line.strip() != b"READY":
                raise RuntimeError(f"a client process failed to open its streams: {line!r}")

    async def count(self, phase: int) -> int:
        """Events of ``phase`` the clients have received so far."""
        total = 0
        for p in self._procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(b"count %d\n" % phase)
            await p.stdin.drain()
            total += int(await asyncio.wait_for(p.stdout.readline(), REPORT_TIMEOUT_S))
        return total

    async def collect(self) -> Latencies:
        """Ask every process for its latencies (it exits after answering)."""
        lat: Latencies = {}
        for p in self._procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.write(b"\n")
            await p.stdin.drain()
            line = await asyncio.wait_for(p.stdout.readline(), REPORT_TIMEOUT_S)
            got = msgspec.json.decode(line, type=dict[str, list[float]])
            for k, v in got.items():
                lat.setdefault(int(k), []).extend(v)
        return lat

    async def stop(self) -> None:
        """Kill whatever is still running and reap it (always safe to call)."""
        for p in self._procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            await p.wait()
        self._procs.clear()


if __name__ == "__main__":
    asyncio.run(client_main(sys.argv[1:]))
