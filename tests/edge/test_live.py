"""Live path: gap filling, slow-client isolation, auth, limits, registry, health and metrics."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import msgspec
import nats

from ofa_contract.auth import AuthSettings
from ofa_contract.layout import NatsHeaders
from ofa_contract.registry import EdgeEntry
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import sse_get
from tests.edge.test_stream import wait_subscribed
from tests.support.wait import wait_until


async def test_live_gap_is_filled_from_the_stream(nats_private) -> None:
    # Scattered losses of single messages. A loss shows only with the next message of the same
    # data item (the headers are per subject), so only the order per item can be kept.
    await _check_gap_filled(nats_private, {3, 4, 9, 15}, gaps=2, asset_order=False)


async def test_a_lost_run_across_items_is_filled_in_the_asset_order(nats_private) -> None:
    # What a NATS node cut off does to the live path: a run of messages of every data item of
    # the asset never arrives. Each item's gap shows with its own next message; filled item by
    # item, item a's later messages reached the client before item b's earlier ones.
    await _check_gap_filled(nats_private, set(range(6, 14)), gaps=1, asset_order=True)


async def _check_gap_filled(
    nats_private, to_drop: set[int], *, gaps: int, asset_order: bool
) -> None:
    """Drop the live copies at ``to_drop`` (positions in the publishing order of 20 messages
    alternating between two data items): the client still gets all of them, once, in order
    per data item and, with ``asset_order``, in the asset's stream order."""
    pub = await Publisher.connect(nats_private.url)
    async with running_edge(nats_private.url) as edge:
        c = await sse_get(f"{edge.url}/asset_stream?asset_uuid=G1")
        await wait_subscribed(c)
        dropped: set[int] = set()

        def drop(msg) -> bool:
            seq = int(msg.headers[NatsHeaders.SEQUENCE])
            if seq in drop_seqs:
                dropped.add(seq)
                return True
            return False

        # Drop the live copies of some messages, as if NATS had lost them on the way.
        drop_seqs: set[int] = set()
        first = await pub.publish("G1", "a", -1)
        base = first + 1
        drop_seqs.update(base + i for i in to_drop)
        edge.state.hub.test_drop_live = drop  # type: ignore[union-attr]
        sent = [first] + [await pub.publish("G1", "ab"[i % 2], i) for i in range(20)]
        got = await c.events_until(lambda e: len(e) >= len(sent))
        assert dropped == drop_seqs  # the hook really dropped them from the live path
        ids = [int(e.id) for e in got]
        assert sorted(ids) == sent  # nothing lost, nothing twice
        if asset_order:
            assert ids == sent
        for item in "ab":
            per = [int(e.id) for e in got if json.loads(e.data)["ID"] == item]
            assert per == sorted(per)
        assert edge.metric("ofa_edge_live_gaps_total") >= gaps
        assert edge.metric("ofa_edge_gap_events_filled_total") == len(to_drop)
        await c.close()
    await pub.close()


async def test_slow_client_is_cut_fast_client_unaffected_and_resume_completes(nats_private) -> None:
    pub = await Publisher.connect(nats_private.url)
    async with running_edge(nats_private.url, client_queue_bytes=64 * 1024) as edge:
        url = f"{edge.url}/asset_stream?asset_uuid=S1"
        fast = await sse_get(url)
        slow = await sse_get(url, rcvbuf=4096)
        await wait_subscribed(fast)
        await wait_subscribed(slow)
        big = "x" * 1500
        n = 3000
        fast_got: list[int] = []

        async def read_fast() -> None:
            got = await fast.events_until(lambda e: len(e) >= n, timeout=60)
            fast_got.extend(int(e.id) for e in got)

        reader = asyncio.create_task(read_fast())
        sent = []
        # Bursts of 20 (30 KB): the test, its clients and the edge share one event loop, so a
        # burst lands in the queues before any client task runs; it must fit the 64 KB bound.
        for i in range(0, n, 20):
            acks = await asyncio.gather(
                *(
                    pub.js.publish(
                        f"ofa.asset.S1.d{j % 5}",
                        msgspec.json.encode({"ID": f"d{j % 5}", "VALUE": big, "n": j}),
                    )
                    for j in range(i, i + 20)
                )
            )
            sent.extend(sorted(int(a.seq) for a in acks))
        await asyncio.wait_for(reader, 60)
        assert fast_got == sent  # the fast client got everything, in order
        await wait_until(
            lambda: edge.metric("ofa_edge_slow_client_cuts_total") >= 1,
            timeout=20,
            what="slow client cut",
            interval=0.05,
        )
        # The slow client now reads what reached it, then the comment saying why, then EOF.
        slow_got = await slow.drain_to_end(timeout=30)
        assert any("too slow" in c for c in slow.parser.comments)
        have = [int(e.id) for e in slow_got]
        assert have == sent[: len(have)] and len(have) < n
        # It resumes by Last-Event-ID and ends up with everything, without duplicates.
        again = await sse_get(url, {"Last-Event-ID": slow.parser.last_event_id})
        rest = await again.events_until(lambda e: len(e) >= n - len(have), timeout=30)
        assert have + [int(e.id) for e in rest] == sent
        await again.close()
        await fast.close()
    await pub.close()


def _token(secret: str, **claims: object) -> str:
    return jwt.encode({"sub": "t", **claims}, secret, algorithm="HS256")


async def test_auth_allows_and_denies(nats_private) -> None:
    pub = await Publisher.connect(nats_private.url)
    secret = "s3cret-s3cret-s3cret-s3cret-s3cret"
    async with running_edge(nats_private.url, auth=AuthSettings(secret=secret)) as edge:
        url = f"{edge.url}/asset_stream?asset_uuid=PRESS-7"
        r = await sse_get(url)
        assert r.status == 401 and "detail" in json.loads(r.body)
        r = await sse_get(url, {"Authorization": "Bearer not.a.jwt"})
        assert r.status == 401
        r = await sse_get(
            url,
            {
                "Authorization": "Bearer "
                + _token("other-secret-other-secret-other-secret", assets=["*"])
            },
        )
        assert r.status == 401
        r = await sse_get(url, {"Authorization": "Bearer " + _token(secret, assets=["ROBOT-*"])})
        assert r.status == 403 and "PRESS-7" in json.loads(r.body)["detail"]
        ok = await sse_get(url, {"Authorization": "Bearer " + _token(secret, assets=["PRESS-*"])})
        assert ok.status == 200
        await wait_subscribed(ok)
        await ok.close()
        ok = await sse_get(url + "&token=" + _token(secret, assets=["PRESS-7"]))
        assert ok.status == 200
        await ok.close()
        ok = await sse_get(url, {"Cookie": "ofa_token=" + _token(secret, assets=["PRESS-?"])})
        assert ok.status == 200
        await ok.close()
        g = f"{edge.url}/group/WC1/asset_stream?asset_uuid=PRESS-7"
        ok = await sse_get(g, {"Authorization": "Bearer " + _token(secret, groups=["WC*"])})
        assert ok.status == 200
        await ok.close()
        r = await sse_get(g, {"Authorization": "Bearer " + _token(secret, groups=["Paint*"])})
        assert r.status == 403
        # A group claim does not open /asset_stream, where the group is unknown (unless "*").
        r = await sse_get(url, {"Authorization": "Bearer " + _token(secret, groups=["WC*"])})
        assert r.status == 403
        expired = jwt.encode({"assets": ["*"], "exp": int(time.time()) - 60}, secret)
        r = await sse_get(url, {"Authorization": "Bearer " + expired})
        assert r.status == 401 and "expired" in json.loads(r.body)["detail"].lower()
    await pub.close()


async def test_limits_health_ready_metrics_and_registry(nats_private) -> None:
    async with running_edge(
        nats_private.url,
        max_connections=2,
        public_url="http://edge-a.example:8100",
        groups=["WC1", "Paint*"],
    ) as edge:
        r = await sse_get(edge.url + "/health")
        assert r.status == 200 and json.loads(r.body) == {"status": "ok"}
        r = await sse_get(edge.url + "/ready")  # no stream yet: not ready, and says why
        assert r.status == 503 and "stream" in json.loads(r.body)["issues"]
        pub = await Publisher.connect(nats_private.url)
        r = await sse_get(edge.url + "/ready")
        assert r.status == 200 and json.loads(r.body) == {"status": "ready"}
        a = await sse_get(f"{edge.url}/asset_stream?asset_uuid=L1")
        b = await sse_get(f"{edge.url}/asset_stream?asset_uuid=L2")
        await wait_subscribed(a)
        await wait_subscribed(b)
        full = await sse_get(f"{edge.url}/asset_stream?asset_uuid=L3")
        assert full.status == 503 and full.headers["retry-after"] == "2"
        assert "limit" in json.loads(full.body)["detail"]
        m = await sse_get(edge.url + "/metrics")
        text = m.body.decode()
        assert "ofa_edge_connections 2.0" in text and "ofa_edge_asset_subscriptions 2.0" in text
        # Registry: the entry is there, refreshed with the connection count.
        nc = await nats.connect(nats_private.url)
        kv = await nc.jetstream().key_value("ofa_edges")

        async def refreshed() -> EdgeEntry | None:
            raw = (await kv.get(edge.state.edge_id)).value
            entry = msgspec.json.decode(raw, type=EdgeEntry)
            return entry if entry.connections == 2 else None

        entry = await wait_until(refreshed, timeout=10, what="registry entry with 2 connections")
        assert entry.url == "http://edge-a.example:8100" and entry.groups == ["WC1", "Paint*"]
        await a.close()
        await b.close()
        await wait_until(  # last client gone: unsubscribed
            lambda: edge.metric("ofa_edge_asset_subscriptions") == 0,
            timeout=10,
            what="no asset subscription",
            interval=0.05,
        )
        await pub.close()
    try:
        await kv.get(edge.state.edge_id)
        raise AssertionError("registry entry still present after stop")
    except nats.js.errors.KeyNotFoundError:
        pass
    await nc.close()


async def test_a_fill_the_stream_answers_short_ends_the_feed_without_skipping(
    nats_private, monkeypatch
) -> None:
    # Right after a stream leader change, the replay that fills a live gap ended before the
    # message that revealed the gap. The feed then sent that message on, and the messages in
    # between reached clients later (out of order) or never (lost, once a client resumed past
    # them). Now the feed ends: what the client got is a gap-free prefix it resumes from.
    from edge import fanout

    real_replay = fanout.replay

    async def short_replay(*args, **kwargs):
        async for stored in real_replay(*args, **kwargs):
            yield stored
            return  # the stream "answers" one message only

    monkeypatch.setattr(fanout, "replay", short_replay)
    pub = await Publisher.connect(nats_private.url)
    async with running_edge(nats_private.url) as edge:
        c = await sse_get(f"{edge.url}/asset_stream?asset_uuid=G2")
        await wait_subscribed(c)
        first = await pub.publish("G2", "a", -1)
        lost = {first + 1 + i for i in range(6, 14)}

        def drop(msg) -> bool:
            return int(msg.headers[NatsHeaders.SEQUENCE]) in lost

        edge.state.hub.test_drop_live = drop  # type: ignore[union-attr]
        sent = [first] + [await pub.publish("G2", "ab"[i % 2], i) for i in range(20)]
        got = [e for e in await c.drain_to_end() if e.id]
        ids = [int(e.id) for e in got]
        assert ids == sent[: len(ids)], ids  # in order, nothing skipped
        assert len(ids) < len(sent)  # the feed ended at the short fill
        await c.close()
    await pub.close()
