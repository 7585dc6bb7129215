"""Re-syncing live feeds from the stream when the stream elects a leader (edge/fanout.py).

A single-node JetStream never elects, so these tests announce the election themselves, on the
advisory subject a clustered stream's new leader publishes to (the real election is in
tests/cluster/test_leader_resync.py). The advisory is published on the same connection as the
messages that follow it, so the edge receives it before their live copies.
"""

from __future__ import annotations

import asyncio

import msgspec

from edge.fanout import Hub
from tests.edge.conftest import RunningEdge, running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import SSEConnection, sse_get
from tests.edge.test_stream import wait_subscribed


def advisory_subject(stream: str) -> str:
    return f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}"


async def open_with_a_lost_message(
    edge: RunningEdge, pub: Publisher, asset: str
) -> tuple[SSEConnection, list[int], list[int]]:
    """A client of ``asset`` that received one message of items a and b; the live copy of a's
    next message (published) was then lost. Returns the client, the stream order so far and
    the ids the client received."""
    hub = edge.state.hub
    assert isinstance(hub, Hub)
    c = await sse_get(f"{edge.url}/asset_stream?asset_uuid={asset}")
    await wait_subscribed(c)
    sent = [await pub.publish(asset, "a", 0), await pub.publish(asset, "b", 0)]
    seen = [int(e.id) for e in await c.events_until(lambda e: len(e) >= 2)]
    dropped = asyncio.Event()

    def drop(msg) -> bool:
        if dropped.is_set() or not msg.subject.endswith(".a"):
            return False
        dropped.set()
        return True

    hub.test_drop_live = drop
    sent.append(await pub.publish(asset, "a", 1))
    await asyncio.wait_for(dropped.wait(), 15)
    assert hub.feeds[asset].last_seq == sent[1]  # the lost one was not delivered
    return c, sent, seen


async def check_order_after_election(
    edge: RunningEdge,
    pub: Publisher,
    c: SSEConnection,
    sent: list[int],
    seen: list[int],
    asset: str,
) -> None:
    """Publish b's next message, then a's: the client must get everything in stream order.

    Without the re-sync, b's message went out at once and the lost one only when a's next
    message revealed it, after b's (SSE ids falling)."""
    sent.append(await pub.publish(asset, "b", 1))
    sent.append(await pub.publish(asset, "a", 2))
    got = await c.events_until(lambda e: len(seen) + len(e) >= len(sent), timeout=30)
    ids = seen + [int(e.id) for e in got]
    assert ids == sent, f"the client got {ids}, the stream order is {sent}"
    assert edge.metric("ofa_edge_resyncs_total", {"reason": "leader_elected"}) >= 1
    assert edge.metric("ofa_edge_gap_events_filled_total") >= 1  # the lost one, maybe newer
    assert edge.metric("ofa_edge_live_gaps_total") == 0  # found by the re-sync, not as a gap


async def test_an_election_delivers_what_the_live_path_lost_before_newer_messages(
    nats_private,
) -> None:
    pub = await Publisher.connect(nats_private.url)
    async with running_edge(nats_private.url) as edge:
        c, sent, seen = await open_with_a_lost_message(edge, pub, "R1")
        advisory = {"type": "io.nats.jetstream.advisory.v1.stream_leader_elected"}
        advisory |= {"stream": pub.stream, "leader": "n2", "replicas": []}
        await pub.nc.publish(advisory_subject(pub.stream), msgspec.json.encode(advisory))
        await check_order_after_election(edge, pub, c, sent, seen, "R1")
        assert edge.metric("ofa_edge_resyncs_total", {"reason": "leader_elected"}) == 1
        await c.close()
    await pub.close()


async def test_a_resync_that_cannot_read_the_stream_closes_the_feed(nats_private) -> None:
    # As a failed gap fill: the clients reconnect and resume by Last-Event-ID.
    pub = await Publisher.connect(nats_private.url)
    async with running_edge(nats_private.url, history_timeout_s=2.0) as edge:
        c, _, _ = await open_with_a_lost_message(edge, pub, "R2")
        await pub.js.delete_stream(pub.stream)
        await pub.nc.publish(advisory_subject(pub.stream), b"not json")
        assert await c.drain_to_end(timeout=20) == []  # the stream ends, nothing more sent
        assert edge.state.hub is not None and "R2" not in edge.state.hub.feeds
        assert edge.metric("ofa_edge_resyncs_total", {"reason": "leader_elected"}) == 1
    await pub.close()
