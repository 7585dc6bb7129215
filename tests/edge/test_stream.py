"""SSE framing, ids, the id= filter, snapshot, resume and reset against a real nats-server."""

from __future__ import annotations

import asyncio
import json

import msgspec

from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import SSEConnection, sse_get


async def wait_subscribed(conn: SSEConnection, timeout: float = 10.0) -> None:
    """The edge sends `retry:` once the live subscription is confirmed."""

    async def loop() -> None:
        while conn.parser.retry is None:
            assert await conn.pump(), "stream ended before retry:"

    await asyncio.wait_for(loop(), timeout)


async def test_events_framing_ids_and_id_filter(nats_private) -> None:
    pub = await Publisher.connect(nats_private.url)
    async with running_edge(nats_private.url, retry_ms=1234) as edge:
        url = f"{edge.url}/asset_stream?asset_uuid=PROVER%203018"
        all_c = await sse_get(url)
        upper_c = await sse_get(url + "&id=Zact")
        lower_c = await sse_get(
            f"{edge.url}/group/WC1/asset_stream?asset_uuid=PROVER%203018&id=avail"
        )
        for c in (all_c, upper_c, lower_c):
            assert c.status == 200
            assert c.headers["content-type"].startswith("text/event-stream")
            assert c.headers["cache-control"] == "no-store"
            assert c.headers["x-accel-buffering"] == "no"
            await wait_subscribed(c)
            assert c.parser.retry == 1234
        sent = []
        for i in range(5):
            sent.append((await pub.publish("PROVER 3018", "Zact", i * 1.5, upper=True), "Zact", i))
            sent.append(
                (await pub.publish("PROVER 3018", "avail", f"v{i}", upper=False), "avail", i)
            )
        await pub.publish("OTHER", "Zact", 99)  # another asset: must not show up
        got = await all_c.events_until(lambda e: len(e) >= 10)
        assert [int(e.id) for e in got] == [s for s, _, _ in sent]
        assert {e.type for e in got} == {"asset_update"}
        first = json.loads(got[0].data)
        assert first["ID"] == "Zact" and first["VALUE"] == 0.0
        assert json.loads(got[1].data)["id"] == "avail"
        up = await upper_c.events_until(lambda e: len(e) >= 5)
        assert [int(e.id) for e in up] == [s for s, d, _ in sent if d == "Zact"]
        assert all(json.loads(e.data)["ID"] == "Zact" for e in up)
        low = await lower_c.events_until(lambda e: len(e) >= 5)
        assert [int(e.id) for e in low] == [s for s, d, _ in sent if d == "avail"]
        assert all(json.loads(e.data)["id"] == "avail" for e in low)
        # Nothing more arrives on the filtered streams (the other item and asset are filtered).
        last = await pub.publish("PROVER 3018", "Zact", 100.0)
        up2 = await upper_c.next_event(5)
        assert up2 is not None and int(up2.id) == last
        assert not lower_c._queue
        for c in (all_c, upper_c, lower_c):
            await c.close()
    await pub.close()


async def test_snapshot_then_live(nats_private) -> None:
    pub = await Publisher.connect(nats_private.url)
    await pub.publish("A1", "Temp", "20.5", upper=False)
    await pub.publish("A1", "avail", "AVAILABLE")
    async with running_edge(nats_private.url) as edge:
        c = await sse_get(f"{edge.url}/asset_stream?asset_uuid=A1&snapshot=true")
        ev = await c.next_event()
        assert ev is not None and ev.type == "asset_state" and ev.id == ""
        state = json.loads(ev.data)
        assert state["asset_uuid"] == "A1"
        assert sorted((d["id"], d["value"]) for d in state["dataItems"]) == [
            ("Temp", "20.5"),
            ("avail", "AVAILABLE"),
        ]
        seq = await pub.publish("A1", "Temp", "21.0", upper=False)
        ev = await c.next_event()
        assert ev is not None and ev.type == "asset_update" and int(ev.id) == seq
        one = await sse_get(f"{edge.url}/asset_stream?asset_uuid=A1&id=avail&snapshot=true")
        ev = await one.next_event()
        assert ev is not None
        assert msgspec.json.decode(ev.data.encode())["value"] == "AVAILABLE"
        await c.close()
        await one.close()
    await pub.close()


async def test_resume_no_gap_no_duplicate_while_publishing(nats_private) -> None:
    pub = await Publisher.connect(nats_private.url)
    for i in range(20):
        await pub.publish("R1", f"item{i % 3}", i)
        await pub.publish("NOISE", "x", i)
    async with running_edge(nats_private.url) as edge:
        url = f"{edge.url}/asset_stream?asset_uuid=R1"
        c = await sse_get(url, {"Last-Event-ID": "0"})
        first = await c.events_until(lambda e: len(e) >= 20)
        seqs = [int(e.id) for e in first]
        assert len(seqs) == 20 and seqs == sorted(seqs)
        await c.close()
        # Missed while disconnected ...
        missed = [await pub.publish("R1", f"item{i % 3}", 100 + i) for i in range(15)]

        async def more() -> list[int]:
            out = []
            for i in range(200):
                out.append(await pub.publish("R1", f"item{i % 3}", 1000 + i))
            return out

        # ... and published while the resume replays history and hands over to live.
        task = asyncio.create_task(more())
        c2 = await sse_get(url, {"Last-Event-ID": str(seqs[9])})
        during = await task
        expected = seqs[10:] + missed + during
        got = await c2.events_until(lambda e: len(e) >= len(expected), timeout=20)
        assert [int(e.id) for e in got] == expected
        await c2.close()
        # Resume by query parameter too (first connect of a page).
        c3 = await sse_get(url + f"&last_event_id={expected[-3]}")
        got3 = await c3.events_until(lambda e: len(e) >= 2)
        assert [int(e.id) for e in got3] == expected[-2:]
        await c3.close()
        assert edge.metric("ofa_edge_resumes_total") >= 3
    await pub.close()


async def test_reset_beyond_history_and_bad_last_event_id(nats_private) -> None:
    pub = await Publisher.connect(nats_private.url, max_msgs_per_subject=3)
    seqs = [await pub.publish("H1", "x", i) for i in range(10)]
    async with running_edge(nats_private.url) as edge:
        url = f"{edge.url}/asset_stream?asset_uuid=H1"
        c = await sse_get(url, {"Last-Event-ID": str(seqs[1])})
        got = await c.events_until(lambda e: len(e) >= 4)
        assert got[0].type == "reset"
        body = json.loads(got[0].data)
        assert body == {
            "reason": "beyond_history",
            "requested": seqs[1],
            "first_available": seqs[7],
        }
        assert [int(e.id) for e in got[1:]] == seqs[7:]
        live = await pub.publish("H1", "x", 99)
        ev = await c.next_event()
        assert ev is not None and int(ev.id) == live
        await c.close()
        # A position the stream never had (e.g. the stream was recreated): reset, then live.
        c = await sse_get(url, {"Last-Event-ID": str(live + 1000)})
        ev = await c.next_event()
        assert ev is not None and ev.type == "reset"
        assert json.loads(ev.data)["reason"] == "unknown_position"
        await c.close()
        assert edge.metric("ofa_edge_resets_total", {"reason": "beyond_history"}) == 1
        # Garbage Last-Event-ID: a clear 400 JSON error.
        bad = await sse_get(url, {"Last-Event-ID": "abc"})
        assert bad.status == 400
        assert "Last-Event-ID" in json.loads(bad.body)["detail"]
        missing = await sse_get(f"{edge.url}/asset_stream")
        assert missing.status == 400 and "asset_uuid" in json.loads(missing.body)["detail"]
    await pub.close()
