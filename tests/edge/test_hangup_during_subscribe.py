"""Regression: clients hanging up while the edge subscribes to their asset.

The hang-up cancelled the edge's ``nc.flush()``; nats-py kept the cancelled future in its PONG
queue and its read loop died on it (InvalidStateError): from then on the edge received nothing
from NATS (no live events, every request timing out, /ready 503) until restarted.
"""

from __future__ import annotations

import asyncio

import httpx

from compose.local_infra import NatsProcess
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import sse_get
from tests.support.wait import wait_until


async def test_hangups_during_subscribe_leave_nats_working(nats_private: NatsProcess) -> None:
    pub = await Publisher.connect(nats_private.url)
    try:
        async with running_edge(nats_private.url) as edge:
            hub = edge.state.hub
            assert hub is not None
            for i in range(30):
                # Hang up right after the headers, before the subscription is confirmed.
                c = await sse_get(f"{edge.url}/asset_stream?asset_uuid=HANGUP-{i % 3}")
                assert c.status == 200
                await c.close()
            await wait_until(
                lambda: not (hub.feeds or hub.clients),
                timeout=10,
                what="hung-up streams released",
                interval=0.05,
            )
            good = await sse_get(f"{edge.url}/asset_stream?asset_uuid=HANGUP-0")
            while good.parser.retry is None:
                assert await asyncio.wait_for(good.pump(), 10), "good stream ended"
            seq = await pub.publish("HANGUP-0", "Temp", 1)
            ev = await good.next_event(10)
            assert ev is not None and int(ev.id) == seq
            async with httpx.AsyncClient(base_url=edge.url, timeout=10) as h:
                r = await h.get("/ready")
                assert r.status_code == 200, r.text
            await good.close()
    finally:
        await pub.close()
