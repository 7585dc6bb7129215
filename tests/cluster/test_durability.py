"""JetStream losing acknowledged writes that Kafka still holds, simulated, and detected.

With NATS's default ``sync_interval`` (2 min) JetStream acknowledges a write once a majority
holds it in memory/page cache, not on disk. A power loss of the nodes (or an OS crash) drops
what was not synced: simulated here by killing every node with SIGKILL and cutting each node's
message blocks back to their size at an earlier moment (their last "sync"), then restarting.
The stream comes back shorter; its sequence numbers, which the edges send as SSE ids, are given
again to new messages; the Kafka coordinates in Nats-Msg-Id (bridge/gaps.py) find every lost
record in Kafka, which still holds them. With ``sync_interval: always`` the synced size is the
written size: the same cut loses nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from aiokafka import AIOKafkaConsumer
from nats.js.api import StreamConfig

from bridge.gaps import Coord, GapTracker, parse_msg_id, records_in
from compose import local_cluster
from ofa_contract.layout import Layout, NatsHeaders
from tests.cluster.support import add_stream_when_ready, wait_stream_whole
from tests.helpers import Endpoints, create_topics, produce

STREAM = "DUR"
N_SYNCED, N_UNSYNCED = 100, 100


def _files(node: local_cluster.ClusterNats) -> dict[Path, int]:
    """Every file of the node's JetStream store (stream blocks, raft logs, indexes) and its
    size: what a sync at this moment would have put on disk."""
    return {p: p.stat().st_size for p in (node.dir / "store").rglob("*") if p.is_file()}


def _power_loss(node: local_cluster.ClusterNats, synced: dict[Path, int]) -> int:
    """What a power loss leaves of a killed node: every file cut back to its size at the last
    sync, files created since gone. Returns the bytes dropped."""
    dropped = 0
    for path, size in _files(node).items():
        keep = synced.get(path)
        if keep is None:
            dropped += size
            path.unlink()
        elif size > keep:
            dropped += size - keep
            with path.open("r+b") as f:
                f.truncate(keep)
    return dropped


async def _publish(js: object, records: list[Coord]) -> list[int]:
    seqs = []
    for c in records:
        ack = await js.publish(  # type: ignore[attr-defined]
            "dur.a.x",
            f"{c.offset}".encode(),
            headers={NatsHeaders.MSG_ID: Layout.msg_id(*c)},
            timeout=10,
        )
        seqs.append(ack.seq)
    return seqs


async def _stored(js: object, n: int) -> list[tuple[int, Coord]]:
    """(stream seq, coordinates) of every stored message, in order."""
    out = []
    for seq in range(1, n + 1):
        try:
            msg = await js.get_msg(STREAM, seq)  # type: ignore[attr-defined]
        except Exception:
            continue
        coord = parse_msg_id((msg.headers or {}).get(NatsHeaders.MSG_ID, ""))
        assert coord is not None
        out.append((seq, coord))
    return out


async def _confirm(bootstrap: str, tracker: GapTracker) -> list[int]:
    """Offsets of the tracker's suspects that Kafka holds records at (the lost ones)."""
    suspects = tracker.suspects()
    if not suspects:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        return [o for s in suspects for o in await records_in(consumer, s)]
    finally:
        await consumer.stop()


@pytest.mark.parametrize("nats_cluster", ["2m", "always"], indirect=True)
async def test_power_loss_with_lazy_fsync_loses_acked_writes_and_kafka_finds_them(
    nats_cluster: local_cluster.Cluster, infra: Endpoints, unique: str
) -> None:
    lazy = nats_cluster.cfg.nats_sync_interval != "always"
    topic = f"t_dur_{unique}"
    await create_topics(infra.kafka, [topic], partitions=1)
    mds = await produce(infra.kafka, topic, [(b"a", b"{}", [])] * (N_SYNCED + N_UNSYNCED))
    coords = [Coord(topic, 0, md.offset) for md in mds]

    nc = await nats.connect(nats_cluster.nats_urls)
    try:
        js = nc.jetstream()
        await add_stream_when_ready(
            js, StreamConfig(name=STREAM, subjects=["dur.>"], num_replicas=3)
        )
        # A write before the new R3 group elected its leader gets "no responders".
        await wait_stream_whole(js, STREAM, 2, 30)
        await _publish(js, coords[:N_SYNCED])
        await wait_stream_whole(js, STREAM, 2, 30)
        # The moment of the last sync: with "always" every later write is synced as well.
        synced = [_files(n) for n in nats_cluster.nats]
        acked = await _publish(js, coords[N_SYNCED:])
        assert acked[-1] == N_SYNCED + N_UNSYNCED  # every write acknowledged
        if not lazy:
            # Every acknowledged write was fsynced by a majority before its ack; a follower
            # may still be appending, which a sync now covers too.
            await wait_stream_whole(js, STREAM, 2, 30)
            synced = [_files(n) for n in nats_cluster.nats]
    finally:
        await nc.close()

    for n in nats_cluster.nats:
        n.kill()
    dropped = [_power_loss(n, s) for n, s in zip(nats_cluster.nats, synced, strict=True)]
    for n in nats_cluster.nats:
        n.start()
    await asyncio.gather(*(n.wait_ready(60) for n in nats_cluster.nats))

    nc = await nats.connect(nats_cluster.nats_urls)
    try:
        js = nc.jetstream()
        leader, _ = await wait_stream_whole(js, STREAM, 2, 60)
        assert leader
        info = await js.stream_info(STREAM)
        stored = await _stored(js, N_SYNCED + N_UNSYNCED)
        # What the bridge would do with the coordinates: Kafka offsets committed up to the
        # last acknowledged record, and the stream read in order.
        tracker = GapTracker()
        tracker.start_at(topic, 0, 0)
        for _, c in stored:
            tracker.observe(c)
        tracker.expect_up_to(topic, 0, coords[-1].offset + 1)
        lost = await _confirm(infra.kafka, tracker)
        after = await _publish(js, [Coord(topic, 0, 10_000 + i) for i in range(3)])
    finally:
        await nc.close()

    print(
        f"\nsync_interval={nats_cluster.cfg.nats_sync_interval}: acked "
        f"{N_SYNCED + N_UNSYNCED}, bytes dropped per node {dropped}, stream after restart "
        f"{info.state.messages} messages (last seq {info.state.last_seq}), lost records found "
        f"in Kafka {len(lost)} (offsets {lost[:1]}..{lost[-1:]}), next seqs {after}"
    )
    if lazy:
        assert all(d > 0 for d in dropped)
        assert info.state.last_seq == N_SYNCED, "the unsynced tail should be gone"
        assert lost == [c.offset for c in coords[N_SYNCED:]], "every lost record is found"
        # Sequence numbers are given again: an SSE client resuming from an id it got before
        # the loss would skip these new messages without any sign.
        assert after == [N_SYNCED + 1, N_SYNCED + 2, N_SYNCED + 3]
    else:
        assert info.state.messages == N_SYNCED + N_UNSYNCED and lost == []
        assert after[0] == N_SYNCED + N_UNSYNCED + 1
