"""The SSE load client of the side-by-side benchmarks: one process, many raw SSE streams.

Driven over stdin/stdout with one JSON object per line, so the process that publishes and
measures the servers is not the one that reads the streams:

    {"cmd": "open", "urls": [...], "ready": "retry:"}  -> {"opened": n, "total": t}
    {"cmd": "phase", "phase": k}                       -> {"ok": true}   (counts phase k only)
    {"cmd": "stats"}                 -> {"deliveries": n, "lat_ms": [p50, p99, max]}
    {"cmd": "close"}                                   -> {"closed": n}
    {"cmd": "quit"}

The client is the same for every server: plain HTTP/1.0 (the body is the raw event stream, no
chunk framing), a stream counts as subscribed once its ``ready`` marker arrived (the edge's
``retry:``, Centrifugo's connect reply), and an event is any ``"ts":<ns>,"ph":<k>`` in the bytes
(the publisher's payload, carried verbatim by both): latency = receive wall clock - ts.

    python -m bench.sse_load   (started by bench.edge_vs_centrifugo)
"""

from __future__ import annotations

import asyncio
import re
import resource
import sys
import time
from typing import cast
from urllib.parse import urlsplit

import msgspec

from bench.common import run_fast

TS = re.compile(rb'"ts":(\d+),"ph":(\d+)')


class Stats:
    """Deliveries and latencies of the current phase, over every stream."""

    def __init__(self) -> None:
        self.phase = 0
        self.deliveries = 0
        self.lat_ms: list[float] = []


class Stream(asyncio.Protocol):
    """One SSE stream: counts the current phase's events and their latency."""

    def __init__(self, req: bytes, ready: bytes, stats: Stats) -> None:
        self.req = req
        self.ready_marker = ready
        self.stats = stats
        self.head_done = False
        self.buf = b""
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.req)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data
        if not self.ready.done():
            if self.ready_marker not in buf:
                self.buf = buf[-65536:]
                return
            if b" 200 " not in buf.split(b"\r\n", 1)[0]:
                self.ready.set_exception(ConnectionError(buf[:200].decode(errors="replace")))
                return
            self.ready.set_result(None)
        # A frame may arrive in pieces: parse up to the last blank line, keep the rest.
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.buf = buf
            return
        block, self.buf = buf[: cut + 2], buf[cut + 2 :]
        st = self.stats
        for m in TS.finditer(block):
            if int(m.group(2)) == st.phase:
                st.deliveries += 1
                st.lat_ms.append((now - int(m.group(1))) / 1e6)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready: {exc}"))


async def open_one(url: str, ready: bytes, stats: Stats) -> Stream:
    """Connect (retrying refused connections a few times) and wait until subscribed."""
    u = urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    req = f"GET {path} HTTP/1.0\r\nHost: {u.netloc}\r\nAccept: text/event-stream\r\n\r\n"
    loop = asyncio.get_running_loop()
    for attempt in range(20):
        try:
            _, proto = await loop.create_connection(
                lambda: Stream(req.encode(), ready, stats), u.hostname, u.port
            )
            await asyncio.wait_for(proto.ready, 60)
            return proto
        except (OSError, ConnectionError, TimeoutError):
            if attempt == 19:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def open_many(urls: list[str], ready: bytes, stats: Stats) -> list[Stream]:
    """Open streams 200 at a time (a connection storm would only measure the accept queue)."""
    sem = asyncio.Semaphore(200)

    async def one(url: str) -> Stream:
        async with sem:
            return await open_one(url, ready, stats)

    return list(await asyncio.gather(*(one(u) for u in urls)))


def percentiles(xs: list[float]) -> list[float]:
    """p50, p99 and max of ``xs`` (NaN when empty)."""
    if not xs:
        return [float("nan")] * 3
    s = sorted(xs)
    return [s[len(s) // 2], s[min(len(s) - 1, int(len(s) * 0.99))], s[-1]]


async def serve() -> None:
    """Answer commands from stdin until ``quit`` or EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stats = Stats()
    streams: list[Stream] = []

    def reply(obj: object) -> None:
        sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        msg = msgspec.json.decode(line)
        cmd = msg["cmd"]
        if cmd == "open":
            streams += await open_many(msg["urls"], msg["ready"].encode(), stats)
            reply({"opened": len(msg["urls"]), "total": len(streams)})
        elif cmd == "phase":
            stats.phase, stats.deliveries, stats.lat_ms = int(msg["phase"]), 0, []
            reply({"ok": True})
        elif cmd == "stats":
            reply({"deliveries": stats.deliveries, "lat_ms": percentiles(stats.lat_ms)})
        elif cmd == "close":
            for s in streams:
                if s.transport is not None:
                    s.transport.close()
            reply({"closed": len(streams)})
            streams = []
        elif cmd == "quit":
            break


def main() -> None:
    """Entry point: uvloop when available, as many file descriptors as allowed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run_fast(serve())


if __name__ == "__main__":
    main()
