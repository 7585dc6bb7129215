"""Two edge processes: one is killed, its clients resume on the other without loss; SIGTERM
tells clients to reconnect and deregisters the edge."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from tests.edge.procs import EdgeProcess
from tests.edge.publisher import Publisher
from tests.edge.sse_client import SSEConnection, sse_get
from tests.edge.test_stream import wait_subscribed


class ResumingClient:
    """What EventSource does: on end of stream, reconnect (to the next edge) with Last-Event-ID."""

    def __init__(self, urls: list[str], asset: str) -> None:
        self.urls = urls
        self.asset = asset
        self.ids: list[int] = []
        self.conn: SSEConnection | None = None
        self.reconnects = 0
        self.subscribed = asyncio.Event()

    async def run(self, expected: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        i = 0
        while len(self.ids) < expected and time.monotonic() < deadline:
            url = f"{self.urls[i % len(self.urls)]}/asset_stream?asset_uuid={self.asset}"
            hdrs = {"Last-Event-ID": str(self.ids[-1])} if self.ids else {}
            try:
                self.conn = await sse_get(url, hdrs)
            except OSError:
                i += 1
                await asyncio.sleep(0.1)
                continue
            if self.conn.status != 200:
                i += 1
                await asyncio.sleep(0.1)
                continue
            await wait_subscribed(self.conn)
            self.subscribed.set()
            while len(self.ids) < expected:
                try:
                    ev = await self.conn.next_event(max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
                if ev is None:
                    break
                if ev.type == "asset_update":
                    self.ids.append(int(ev.id))
            await self.conn.close()
            if len(self.ids) < expected:
                self.reconnects += 1
                i += 1


async def test_edge_killed_clients_resume_on_other_edge(nats_private, tmp_path) -> None:
    pub = await Publisher.connect(nats_private.url)
    a = EdgeProcess(nats_private.url, tmp_path)
    b = EdgeProcess(nats_private.url, tmp_path)
    await a.start()
    await b.start()
    try:
        assets = ["K1", "K2", "K3"]
        # Clients of each asset on both edges (first URL tried = the edge it starts on).
        clients = [ResumingClient([a.url, b.url], x) for x in assets] + [
            ResumingClient([b.url, a.url], x) for x in assets
        ]
        n = 150
        tasks = [asyncio.create_task(c.run(n)) for c in clients]
        await asyncio.wait_for(asyncio.gather(*(c.subscribed.wait() for c in clients)), 20)
        sent: dict[str, list[int]] = {x: [] for x in assets}
        for i in range(n):
            for x in assets:
                sent[x].append(await pub.publish(x, f"i{i % 4}", i))
            if i == 50:
                a.kill()  # kill -9 in the middle of the flow
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for c in clients:
            assert c.ids == sent[c.asset], f"client of {c.asset} lost or repeated events"
        assert all(c.reconnects >= 1 for c in clients[:3])  # they really moved
        assert all(c.reconnects == 0 for c in clients[3:])
    finally:
        a.kill()
        await b.stop()
        await pub.close()


async def test_sigterm_tells_clients_to_reconnect_and_deregisters(nats_private, tmp_path) -> None:
    pub = await Publisher.connect(nats_private.url)
    e = EdgeProcess(nats_private.url, tmp_path)
    await e.start()
    try:
        nc = await nats.connect(nats_private.url)
        kv = await nc.jetstream().key_value("ofa_edges")
        assert (await kv.get(f"edge-{e.port}")).value
        c = await sse_get(f"{e.url}/asset_stream?asset_uuid=T1")
        await wait_subscribed(c)
        seq = await pub.publish("T1", "x", 1)
        ev = await c.next_event()
        assert ev is not None and int(ev.id) == seq
        t0 = time.monotonic()
        rc = await e.terminate()
        rest = await c.drain_to_end(timeout=10)
        assert rest == []
        assert any("shutting down" in m for m in c.parser.comments)
        assert c.eof and rc == 0 and time.monotonic() - t0 < 10
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await kv.get(f"edge-{e.port}")
        await nc.close()
    finally:
        await e.stop()
        await pub.close()
