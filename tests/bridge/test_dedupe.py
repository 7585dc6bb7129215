"""The bridge's de-duplication by source coordinates (pure logic, no broker)."""

from __future__ import annotations

import random

from aiokafka import TopicPartition

from bridge.dedupe import SourceDedupe, decode_map, encode_map, source_of
from bridge.tracker import Entry, PartitionTracker
from ofa_contract.layout import KafkaHeaders as H


def _headers(topic: bytes, partition: bytes, offset: bytes) -> list[tuple[str, bytes]]:
    return [
        ("other", b"x"),
        (H.SRC_TOPIC, topic),
        (H.SRC_PARTITION, partition),
        (H.SRC_OFFSET, offset),
    ]


def test_source_of_reads_the_headers_and_refuses_partial_or_garbage() -> None:
    assert source_of(_headers(b"ofa_assets", b"3", b"17")) == ("ofa_assets", 3, 17)
    assert source_of(None) is None
    assert source_of([(H.SRC_TOPIC, b"t"), (H.SRC_OFFSET, b"1")]) is None
    assert source_of(_headers(b"t", b"x", b"1")) is None
    assert source_of(_headers(b"\xff", b"1", b"1")) is None


def test_a_replay_is_recognised_and_new_records_pass() -> None:
    d = SourceDedupe()
    first = [("in", 0, o) for o in range(10)] + [("in", 1, o) for o in range(5)]
    assert all(d.admit(s) for s in first)
    # The splitter crashed and replays partition 0 from offset 6 and partition 1 from 2,
    # interleaved with each other, then goes on with new records.
    replay = [("in", 0, 6), ("in", 1, 2), ("in", 0, 7), ("in", 1, 3), ("in", 0, 9), ("in", 1, 4)]
    assert not any(d.admit(s) for s in replay)
    assert d.admit(("in", 0, 10))
    assert d.admit(("in", 1, 5))
    # Another source topic with the same partition numbers is another source.
    assert d.admit(("other", 0, 3))


def test_metadata_round_trip_and_foreign_metadata_is_empty() -> None:
    entries = {("ofa_assets", p): p * 1000 + 7 for p in range(12)}
    entries[("t.2-x_y", 0)] = 5
    text, dropped = encode_map(entries, 4000)
    assert dropped == 0
    assert decode_map(text) == entries
    for foreign in ("", None, "something else", "ofa-src1;", "ofa-src1;t=1:x", "ofa-src1;t="):
        assert decode_map(foreign) == {}
    assert encode_map({}, 4000) == ("", 0)


def test_metadata_past_the_limit_keeps_what_fits_and_counts_the_rest() -> None:
    entries = {("ofa_assets", p): 10**9 + p for p in range(400)}
    text, dropped = encode_map(entries, 4000)
    assert len(text.encode()) <= 4000
    kept = decode_map(text)
    assert dropped == 400 - len(kept) > 0
    # A subset: each kept entry exactly as it was (missing ones mean "no de-duplication").
    assert all(entries[k] == v for k, v in kept.items())
    assert encode_map({("a" * 50, 0): 1}, 10) == ("", 1)


def test_settled_map_only_covers_records_below_the_committable_offset() -> None:
    """What is committed with an offset never claims a record above it: a replayed copy of a
    record that was still in flight at the crash must be published by the next owner."""
    tr = PartitionTracker(TopicPartition("derived", 0), "g")
    entries = []
    for off, src in enumerate([("in", 0, 100), ("in", 1, 50), ("in", 0, 101)]):
        assert tr.dedupe.admit(src)
        e = Entry(tr, off, "subj", b"", b"", source=src)
        tr.add(e)
        entries.append(e)
    tr.ack(entries[2])  # acked out of order: nothing committable yet
    assert tr.commit_due() is None and tr.dedupe.settled == {}
    tr.ack(entries[0])
    assert tr.commit_due() == 1
    assert tr.dedupe.settled == {("in", 0): 100}
    # The next owner, restored from this commit, republishes 1 and 2 (derived offsets) and
    # recognises nothing it should publish as a copy.
    text, _ = tr.dedupe.metadata(4000)
    nxt = SourceDedupe(decode_map(text))
    assert nxt.admit(("in", 1, 50)) and nxt.admit(("in", 0, 101))
    assert not nxt.admit(("in", 0, 100))
    tr.ack(entries[1])
    assert tr.commit_due() == 3
    assert tr.dedupe.settled == {("in", 0): 101, ("in", 1): 50}


def test_random_crash_replays_give_each_source_record_once_in_order() -> None:
    """A derived partition fed by 3 source partitions, with splitter crashes that replay from
    an earlier (committed) source offset: the admitted records are each source record once,
    in source order, and the map survives a bridge restart from any committed point."""
    rng = random.Random(7)
    written: list[tuple[str, int, int]] = []
    next_off = {p: 0 for p in range(3)}
    committed = dict(next_off)
    for _ in range(300):
        p = rng.randrange(3)
        written.append(("in", p, next_off[p]))
        next_off[p] += 1
        if rng.random() < 0.1:
            committed = dict(next_off)
        if rng.random() < 0.03:  # crash: replay from the committed offsets
            next_off = dict(committed)
    d = SourceDedupe()
    admitted: list[tuple[str, int, int]] = []
    for src in written:
        if rng.random() < 0.05:  # the bridge restarts from its settled (here: all) map
            d = SourceDedupe(decode_map(encode_map(d.seen, 4000)[0]))
        if d.admit(src):
            admitted.append(src)
        d.settle(src)
    assert len(admitted) < len(written), "the schedule should contain replays"
    for p in range(3):
        top = max(o for _, q, o in written if q == p)
        assert [o for _, q, o in admitted if q == p] == list(range(top + 1))
