"""The gap watcher (bridge/gap_watch.py) against real Kafka and nats-server: records JetStream
lost after acknowledging them are found from the Kafka coordinates in Nats-Msg-Id and re-bridged;
transaction markers and copies skipped on purpose are not."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import msgspec
import nats
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from bridge.gap_watch import GapWatch, _runs, _spans, decode_headers
from bridge.gaps import Coord, GapTracker, Suspect
from bridge.publisher import encode_headers
from bridge.settings import BridgeSettings
from bridge.stream_setup import ensure_streams
from compose.local_infra import NatsProcess
from ofa_contract.layout import KafkaHeaders, Layout, NatsHeaders
from tests.bridge.support import (
    InProcessWorker,
    bridge_layout,
    bridge_settings,
    read_stream,
    stream_count,
)

# The power-loss simulation of the cluster durability test, on a single nats-server.
from tests.cluster.test_durability import _files as store_files
from tests.cluster.test_durability import _power_loss as power_loss
from tests.edge.conftest import running_edge
from tests.edge.sse_client import sse_get
from tests.helpers import Endpoints
from tests.support.kafka import create_topics
from tests.support.samples import item_event
from tests.support.wait import wait_until

Record = tuple[int, bytes, bytes, list[tuple[str, bytes]]]


# -- pure parts -----------------------------------------------------------------------------


def test_header_block_round_trips_and_runs_group_offsets() -> None:
    headers = {NatsHeaders.MSG_ID: "t:0:5", NatsHeaders.SRC_OFFSET: "17", "x": "a: b"}
    assert decode_headers(encode_headers(headers)) == headers
    assert _runs([1, 2, 3, 7, 9, 10]) == [(1, 3, 3), (7, 7, 1), (9, 10, 2)]
    assert _runs([]) == []
    # Offsets in one hole make one run (markers between them), across holes they do not.
    assert _runs([1, 2, 4, 7, 9], [(1, 5), (7, 10)]) == [(1, 4, 3), (7, 9, 2)]
    parts = [Suspect("t", 0, a, b, 0.0) for a, b in ((3, 4), (10, 12), (2000, 2001))]
    assert [(p.start, p.end) for p in _spans(parts)] == [(3, 12), (2000, 2001)]


def test_offsets_the_consumer_skipped_are_not_suspects() -> None:
    tp = TopicPartition("t", 0)
    watch = GapWatch.__new__(GapWatch)  # only the pure bookkeeping is exercised
    watch._skipped, watch._last_consumed = {}, {}

    class Rec:
        def __init__(self, offset: int) -> None:
            self.offset = offset

    watch.consumed(tp, [Rec(o) for o in (0, 1, 2, 4, 5)])  # 3: a marker
    watch.consumed(tp, [Rec(o) for o in (8, 9)])  # 6-7: marker and an aborted record
    assert watch._skipped[tp] == [(3, 4), (6, 8)]
    parts = watch._unexplained(tp, Suspect("t", 0, 2, 10, 0.0))
    assert [(p.start, p.end) for p in parts] == [(2, 3), (4, 6), (8, 10)]
    assert watch._unexplained(tp, Suspect("t", 0, 3, 4, 0.0)) == []


def test_settling_part_of_a_hole_keeps_the_rest() -> None:
    g = GapTracker()
    g.start_at("t", 0, 0)
    g.observe(Coord("t", 0, 0))
    g.observe(Coord("t", 0, 10))
    (hole,) = g.suspects()
    g.settle(hole._replace(end=4))  # checked below the committed offset 4 only
    assert [(s.start, s.end) for s in g.suspects()] == [(4, 10)]
    assert g.knows("t", 0) and not g.knows("t", 1)
    g.drop_holes("t", 0)
    assert g.suspects() == [] and g.highs() == {("t", 0): 10}


# -- helpers --------------------------------------------------------------------------------


def _records(n: int, first: int, partitions: int) -> list[Record]:
    """``n`` records over ``partitions`` partitions, each with its own source coordinates."""
    out: list[Record] = []
    for i in range(first, first + n):
        src = [
            (KafkaHeaders.SRC_TOPIC, b"ofa_assets"),
            (KafkaHeaders.SRC_PARTITION, b"0"),
            (KafkaHeaders.SRC_OFFSET, str(i).encode()),
        ]
        out.append((i % partitions, f"asset-{i % 4}".encode(), item_event("v", i), src))
    return out


async def _produce_tx(kafka: str, topic: str, records: list[Record], per_tx: int) -> list[Coord]:
    """Produce in transactions of ``per_tx`` records: every commit leaves a marker offset."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka, transactional_id=f"gapw-{uuid.uuid4().hex[:8]}"
    )
    await producer.start()
    out: list[Coord] = []
    try:
        for i in range(0, len(records), per_tx):
            async with producer.transaction():
                futs = [
                    await producer.send(topic, v, key=k, headers=h, partition=p)
                    for p, k, v, h in records[i : i + per_tx]
                ]
            out += [Coord(topic, md.partition, md.offset) for md in await asyncio.gather(*futs)]
    finally:
        await producer.stop()
    return out


async def _group_topic(
    infra: Endpoints, unique: str, group: str, partitions: int
) -> tuple[Layout, str]:
    """The test's layout and the derived topic of ``group``, created."""
    layout = bridge_layout(unique)
    topic = layout.group_topic(group)
    await create_topics(infra.kafka, [topic], partitions=partitions)
    return layout, topic


def _committed_all(w: InProcessWorker, coords: list[Coord]) -> bool:
    """True once the worker committed past every record of ``coords``."""
    want: dict[int, int] = {}
    for c in coords:
        want[c.partition] = max(want.get(c.partition, 0), c.offset + 1)
    got = {tp.partition: tr.committed for tp, tr in w.worker.trackers.items()}
    return all((got.get(p) or 0) >= o for p, o in want.items())


async def _settled_store(nats_proc: NatsProcess) -> dict[Path, int]:
    """The store's file sizes once nats-server wrote out what it holds (unchanged over 3 looks):
    what an fsync at this moment would have put on disk."""
    seen: list[dict[Path, int]] = []

    def stable() -> dict[Path, int] | None:
        seen.append(store_files(nats_proc))
        return seen[-1] if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3] else None

    return await wait_until(stable, timeout=20, what="store files settled", interval=0.2)


async def _state_values(url: str, layout: Layout, assets: int) -> dict[int, int]:
    """The VALUE of data item "v" of each asset in the asset_state bucket."""
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(layout.state_bucket)
        out = {}
        for a in range(assets):
            entry = await kv.get(Layout.state_key(f"asset-{a}", "v"))
            out[a] = msgspec.json.decode(entry.value or b"{}")["VALUE"]
        return out
    finally:
        await nc.close()


def _ids(msgs: list[Any]) -> list[str]:
    return [m.headers[NatsHeaders.MSG_ID] for m in msgs]


# -- JetStream loses its acknowledged tail ----------------------------------------------------


async def test_acked_tail_lost_in_a_nats_crash_is_found_and_rebridged(
    infra: Endpoints, nats_private: NatsProcess, unique: str
) -> None:
    n1, n2, n3 = 300, 200, 60
    layout, topic = await _group_topic(infra, unique, "G", partitions=2)
    # Checks are driven by the test (the watcher's loop only checks on assignment here).
    s = bridge_settings(unique, gap_check_interval_s=3600.0)
    url = nats_private.url
    async with InProcessWorker(infra.kafka, url, s, layout) as w:
        watch = w.worker.gap_watch
        coords = await _produce_tx(infra.kafka, topic, _records(n1, 0, 2), per_tx=25)
        await wait_until(lambda: _committed_all(w, coords), timeout=60, what="n1 committed")
        synced = await _settled_store(nats_private)  # the last sync
        coords += await _produce_tx(infra.kafka, topic, _records(n2, n1, 2), per_tx=25)
        await wait_until(lambda: _committed_all(w, coords), timeout=60, what="n2 committed")
        await watch.check()  # a periodic check: the stream holds every record
        assert w.metric("ofa_bridge_gaps_detected_total", {"group": "G"}) == 0
        assert await stream_count(url, layout.stream) == n1 + n2

        nats_private.kill()  # power loss: what was not synced is gone
        dropped = power_loss(nats_private, synced)
        nats_private.start()
        await nats_private.wait_ready()
        survivors = await stream_count(url, layout.stream)
        lost = n1 + n2 - survivors
        assert dropped > 0 and lost > 0, (dropped, survivors)

        # The flow goes on: new records take the sequence numbers of lost ones.
        coords += await _produce_tx(infra.kafka, topic, _records(n3, n1 + n2, 2), per_tx=20)
        await wait_until(lambda: _committed_all(w, coords), timeout=60, what="n3 committed")

        async def n3_stored() -> bool:
            return await stream_count(url, layout.stream) >= survivors + n3

        await wait_until(n3_stored, timeout=30, what="n3 stored")
        # The watcher's own connection reconnects on its own schedule (nats.py's, every 2 s).
        await wait_until(
            lambda: watch._nc is not None and watch._nc.is_connected,
            timeout=30,
            what="the watcher reconnected",
        )
        await watch.check()
        detected = w.metric("ofa_bridge_gaps_detected_total", {"group": "G"})
        repaired = w.metric("ofa_bridge_gaps_repaired_total", {"group": "G"})
        markers = w.metric("ofa_bridge_gaps_dismissed_total", {"reason": "not_a_record"})
        print(
            f"\nacked {n1 + n2}, bytes dropped {dropped}, survivors {survivors}, lost {lost}; "
            f"detected {detected}, repaired {repaired}, markers dismissed {markers}"
        )
        assert w.metric("ofa_bridge_gap_rescans_total") == 1
        assert detected == repaired == lost
        await watch.check()  # nothing left: a second check repairs nothing more
        assert w.metric("ofa_bridge_gaps_repaired_total", {"group": "G"}) == lost
        total = n1 + n2 + n3
        newest = {a: max(i for i in range(total) if i % 4 == a) for a in range(4)}
        assert await _state_values(url, layout, 4) == newest

        # An SSE client replaying asset-0's history through an edge gets every record once;
        # the re-published ones come last (their new stream sequences), after newer records.
        async with running_edge(url, layout=layout) as edge:
            sse = await sse_get(f"{edge.url}/asset_stream?asset_uuid=asset-0&last_event_id=0")
            want = [i for i in range(total) if i % 4 == 0]
            # (first `event: reset`: asset-0's first message is not at seq 1, so the edge cannot
            # tell whether older ones of it expired)
            got = await sse.events_until(
                lambda e: sum(x.type == "asset_update" for x in e) >= len(want), timeout=30
            )
            await sse.close()
        got = [e for e in got if e.type == "asset_update"]
        values = [json.loads(e.data)["VALUE"] for e in got]
        assert sorted(values) == want, "every record of the asset once"
        # In stream order (the SSE ids), so the last event is a re-published older record.
        assert [int(e.id) for e in got] == sorted(int(e.id) for e in got)
        assert values[-1] < want[-1], values[-5:]

    msgs = await read_stream(url, layout.stream, layout.stream_subjects())
    ids = _ids(msgs)
    assert len(ids) == len(set(ids)) == n1 + n2 + n3, "every record once"
    assert set(ids) == {Layout.msg_id(*c) for c in coords}
    assert all(NatsHeaders.SRC_OFFSET in m.headers for m in msgs)


# -- records never stored, markers and copies skipped on purpose -----------------------------


async def _store_as_bridged(url: str, layout: Layout, s: BridgeSettings, recs: list[Any]) -> None:
    """Store records in the stream as an earlier bridge worker did (subject, Msg-Id, source)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, layout, s)
        for coord, (_, key, value, src) in recs:
            headers = {NatsHeaders.MSG_ID: Layout.msg_id(*coord)}
            names = {
                KafkaHeaders.SRC_TOPIC: NatsHeaders.SRC_TOPIC,
                KafkaHeaders.SRC_PARTITION: NatsHeaders.SRC_PARTITION,
                KafkaHeaders.SRC_OFFSET: NatsHeaders.SRC_OFFSET,
            }
            headers.update({names[k]: v.decode() for k, v in src})
            subject = layout.stream_subject(key.decode(), "v")
            await js.publish(subject, value, headers=headers, timeout=10)
    finally:
        await nc.close()


async def _commit(kafka: str, group: str, tp: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
        assert await consumer.committed(tp) == offset
    finally:
        await consumer.stop()


async def test_new_owner_rebridges_lost_records_but_not_markers_or_skipped_copies(
    infra: Endpoints, unique: str
) -> None:
    layout, topic = await _group_topic(infra, unique, "D", partitions=1)
    recs = _records(40, 0, 1)
    # A second copy of record 3's source record (at-least-once splitting): the bridge skips it
    # (de-duplication by source coordinates), so it is missing from the stream on purpose.
    recs.append(recs[3])
    coords = await _produce_tx(infra.kafka, topic, recs, per_tx=7)
    lost = [coords[5], coords[20], coords[21], coords[22]]
    s = bridge_settings(unique, gap_check_interval_s=0.5)
    # What an earlier owner left: the stream lacks `lost` (and the copy), yet it committed all.
    kept = [(c, r) for c, r in zip(coords[:-1], recs, strict=False) if c not in lost]
    await _store_as_bridged(infra.nats, layout, s, kept)
    await _commit(infra.kafka, s.consumer_group, TopicPartition(topic, 0), coords[-1].offset + 1)

    # The next owner checks, on assignment and every interval, what its predecessor committed.
    async with InProcessWorker(infra.kafka, infra.nats, s, layout) as w:

        def repaired() -> bool:
            return w.metric("ofa_bridge_gaps_repaired_total", {"group": "D"}) >= len(lost)

        await wait_until(repaired, timeout=30, what="repair by the watcher")
        checks = w.metric("ofa_bridge_gap_checks_total")
        await wait_until(
            lambda: w.metric("ofa_bridge_gap_checks_total") >= checks + 2,
            timeout=30,
            what="two more checks",
        )
        assert w.metric("ofa_bridge_gaps_detected_total", {"group": "D"}) == len(lost)
        assert w.metric("ofa_bridge_gaps_repaired_total", {"group": "D"}) == len(lost)
        dismissed = {
            r: w.metric("ofa_bridge_gaps_dismissed_total", {"reason": r})
            for r in ("source_duplicate", "not_a_record", "deduplicated")
        }
        # Each committed transaction left a marker; this owner's consumer skipped none itself.
        assert dismissed["source_duplicate"] == 1 and dismissed["not_a_record"] >= 5, dismissed
        assert dismissed["deduplicated"] == 0
        assert w.metric("ofa_bridge_gap_rescans_total") == 0

        # asset_state, which sources the stream, still holds each item's newest value.
        assert await _state_values(infra.nats, layout, 4) == {0: 36, 1: 37, 2: 38, 3: 39}
        assert w.metric("ofa_bridge_gap_states_restored_total") == 3  # assets 0, 1 and 2

    msgs = await read_stream(infra.nats, layout.stream, layout.stream_subjects())
    ids = _ids(msgs)
    assert sorted(ids) == sorted(Layout.msg_id(*c) for c in coords[:-1])
    # Re-published records come after the others: stream order is not Kafka order for them.
    assert ids[-len(lost) :] == [Layout.msg_id(*c) for c in lost]
    # As the bridge publishes them: with the source coordinates.
    assert all(m.headers.get(NatsHeaders.SRC_OFFSET) for m in msgs[-len(lost) :])


async def test_offsets_kafka_no_longer_holds_are_alarmed_as_lost_for_good(
    infra: Endpoints, unique: str
) -> None:
    layout, topic = await _group_topic(infra, unique, "K", partitions=1)
    recs = _records(20, 0, 1)
    coords = await _produce_tx(infra.kafka, topic, recs, per_tx=5)
    s = bridge_settings(unique, gap_check_interval_s=0.5)
    missing = {coords[1], coords[15]}
    kept = [(c, r) for c, r in zip(coords, recs, strict=True) if c not in missing]
    await _store_as_bridged(infra.nats, layout, s, kept)
    tp = TopicPartition(topic, 0)
    await _commit(infra.kafka, s.consumer_group, tp, coords[-1].offset + 1)
    # Kafka's retention removed the oldest records, record 1 among them.
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(coords[3].offset)})
    finally:
        await admin.close()

    async with InProcessWorker(infra.kafka, infra.nats, s, layout) as w:
        await wait_until(
            lambda: w.metric("ofa_bridge_gaps_repaired_total", {"group": "K"}) >= 1,
            timeout=30,
            what="record 15 re-published",
        )
        assert w.metric("ofa_bridge_gaps_unrecoverable_total") == 1  # record 1's offset
        assert w.metric("ofa_bridge_gaps_detected_total", {"group": "K"}) == 1
    ids = _ids(await read_stream(infra.nats, layout.stream, layout.stream_subjects()))
    assert ids[-1] == Layout.msg_id(*coords[15]) and Layout.msg_id(*coords[1]) not in ids
