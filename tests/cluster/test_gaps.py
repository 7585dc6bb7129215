"""Gap detection from the Kafka coordinates in Nats-Msg-Id (bridge/gaps.py): holes between
offsets, late fills from re-sends, the lost tail below the committed offset, and the check
against real Kafka that tells lost records from transaction markers and aborted records."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.gaps import Coord, GapTracker, Suspect, parse_msg_id, records_in
from ofa_contract.layout import Layout
from tests.helpers import Endpoints, create_topics


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_parse_msg_id_round_trips_and_rejects_others() -> None:
    assert parse_msg_id(Layout.msg_id("asset_stream_WC1", 2, 41)) == Coord(
        "asset_stream_WC1", 2, 41
    )
    for bad in ("", "x", "t:1", ":1:2", "t:a:2", "t:1:-3", "t:1:2.5"):
        assert parse_msg_id(bad) is None, bad


def test_holes_open_fill_late_and_age() -> None:
    clock = Clock()
    g = GapTracker(clock)
    g.start_at("t", 0, 10)
    for off in (10, 11, 14, 15, 17):
        g.observe(Coord("t", 0, off))
    assert [(s.start, s.end) for s in g.suspects()] == [(12, 14), (16, 17)]
    clock.t += 5
    g.observe(Coord("t", 0, 12))  # a re-send stored late fills part of a hole
    g.observe(Coord("t", 0, 16))
    assert [(s.start, s.end, s.age_s) for s in g.suspects()] == [(13, 14, 5.0)]
    assert g.suspects(older_than_s=6) == []
    g.settle(g.suspects()[0])
    assert g.suspects() == []
    g.observe(Coord("t", 0, 15))  # a duplicate below the high mark changes nothing
    assert g.suspects() == []


def test_lost_tail_below_the_committed_offset() -> None:
    g = GapTracker(Clock())
    g.start_at("t", 1, 0)
    for off in range(5):
        g.observe(Coord("t", 1, off))
    g.expect_up_to("t", 1, 5)  # all seen: nothing suspect
    assert g.suspects() == []
    g.expect_up_to("t", 1, 9)  # committed past what the stream holds
    assert g.suspects() == [Suspect("t", 1, 5, 9, 0.0)]
    g.observe(Coord("t", 1, 7))
    assert [(s.start, s.end) for s in g.suspects()] == [(5, 7), (8, 9)]


async def test_kafka_tells_lost_records_from_markers_and_aborts(
    infra: Endpoints, unique: str
) -> None:
    topic = f"t_gaps_{unique}"
    await create_topics(infra.kafka, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, transactional_id=f"gaps-{unique}")
    await producer.start()
    try:
        offsets: dict[str, list[int]] = {"committed": [], "aborted": []}
        for kind in ("committed", "aborted", "committed"):
            await producer.begin_transaction()
            for i in range(3):
                md = await (await producer.send(topic, f"{kind}{i}".encode()))
                offsets[kind].append(md.offset)
            if kind == "aborted":
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
    finally:
        await producer.stop()
    # Offsets: 0-2 records, 3 marker, 4-6 aborted, 7 marker, 8-10 records, 11 marker.
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka, isolation_level="read_committed")
    await consumer.start()
    try:
        whole = Suspect(topic, 0, 0, 12, 0.0)
        assert await records_in(consumer, whole) == offsets["committed"]
        markers_and_aborts = Suspect(topic, 0, 3, 8, 0.0)
        assert await records_in(consumer, markers_and_aborts) == []
        one = Suspect(topic, 0, offsets["committed"][4], offsets["committed"][4] + 1, 0.0)
        assert await records_in(consumer, one) == [offsets["committed"][4]]
    finally:
        await consumer.stop()
