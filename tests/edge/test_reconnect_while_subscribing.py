"""A feed killed by a NATS reconnect while it was still subscribing is never handed out.

The chaos test (seed 455707910) saw a client resume during nats-server's restart: its feed was
created while NATS was away, the reconnect killed every feed (this one too, still in start()),
start() then completed and the client was attached to the dead, unsubscribed feed: it got its
history, then nothing, with the connection open (348 events never delivered).
"""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.js.api import StreamConfig

from compose.local_infra import NatsProcess
from edge.fanout import Hub
from edge.metrics import EdgeMetrics
from ofa_contract.layout import Layout
from tests.support.wait import wait_until


async def test_acquire_refuses_a_feed_killed_while_subscribing(
    nats_private: NatsProcess, unique: str
) -> None:
    layout = Layout().namespaced(f"t_rs_{unique}_")
    disconnected = asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    nc = await nats.connect(
        nats_private.url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        disconnected_cb=on_disconnect,
    )
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=layout.stream, subjects=[layout.stream_subjects()])
        )
        hub = Hub(nc, layout=layout, metrics=EdgeMetrics())
        nats_private.stop()
        await asyncio.wait_for(disconnected.wait(), 10)
        acquiring = asyncio.create_task(hub.acquire("SIM-ASSET-001"))
        # start() waits for the server to confirm the subscription, i.e. for the reconnect.
        await wait_until(lambda: "SIM-ASSET-001" in hub.feeds, what="the feed to be starting")
        assert not acquiring.done()
        hub.kill_all("edge lost its NATS connection; reconnect")  # what the reconnect does
        nats_private.start()
        await nats_private.wait_ready()

        with pytest.raises(RuntimeError, match="closed while starting"):
            await asyncio.wait_for(acquiring, 30)
        assert "SIM-ASSET-001" not in hub.feeds
    finally:
        await nc.close()
