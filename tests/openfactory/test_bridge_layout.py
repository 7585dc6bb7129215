"""One bridge worker publishes what the stream stored in OpenFactory's layout, too (real Kafka,
private nats-server): subjects, payloads, the guards, and the setting that turns it off."""

from __future__ import annotations

import json

import msgspec
import nats

from compose.local_infra import NatsProcess
from ofa_contract import openfactory
from ofa_contract.layout import KafkaHeaders
from tests.bridge.support import InProcessWorker, bridge_case, stream_holds
from tests.helpers import Endpoints
from tests.openfactory.subscriber import OpenFactorySubscriber
from tests.support.kafka import consume_all, produce
from tests.support.samples import item_event
from tests.support.wait import wait_until


async def test_stored_records_reach_openfactory_subjects(
    infra: Endpoints, nats_private: NatsProcess, unique: str
) -> None:
    s, layout, (topic,) = await bridge_case(infra.kafka, unique, ["WC1"], partitions=2)
    # Odd ones as the splitter writes them from a LogAppendTime ofa_assets: the timestamp (the
    # source's) was the broker's, which OpenFactory's forwarder reports as "broker".
    appended = [(KafkaHeaders.SRC_TIMESTAMP_TYPE, b"1")]
    records = [(b"prover3018", item_event("Temp", i), appended if i % 2 else []) for i in range(5)]
    odd = [
        (b"A", item_event("a.b", 0), []),  # one more token: not for <UUID>.*, for A.> and A.a.b
        (b"A", item_event("has space", 1), []),  # would break the protocol line: skipped
        (b"A", item_event("*", 2), []),  # a wildcard token: skipped
        # A JetStream API call if published: must be skipped (the stream must survive it).
        (b"$JS.API.STREAM.DELETE", item_event(layout.stream, 3), []),
        (b"A", item_event("last", 4), []),
    ]
    sdk = OpenFactorySubscriber(nats_private.url, "prover3018")
    await sdk.start()
    nc = await nats.connect(nats_private.url)
    every_a = await nc.subscribe("A.>")
    async with InProcessWorker(infra.kafka, nats_private.url, s, layout) as w:
        metas = await produce(infra.kafka, topic, records + odd)
        n = len(records) + len(odd)
        await wait_until(
            lambda: stream_holds(nats_private.url, layout.stream, n), timeout=30, what="stored"
        )

        async def forwarded() -> bool:
            return len(sdk.received) >= len(records)

        await wait_until(forwarded, timeout=15, what="the OpenFactory-layout messages")
    # Stopped: every ack was handled.
    for reason in ("whitespace", "wildcard", "reserved"):
        labels = {"reason": reason}
        assert w.metric("ofa_bridge_openfactory_skipped_total", labels) == 1, reason
    assert w.metric("ofa_bridge_openfactory_published_total") == len(records) + 2

    # Another worker replays the whole topic (a new consumer group: no committed offsets), as a
    # next owner after a crash does: the stream reports every record a duplicate, and none may
    # reach OpenFactory's subjects again.
    again = msgspec.structs.replace(s, consumer_group=f"{s.consumer_group}-2", worker_id="w2")
    async with InProcessWorker(infra.kafka, nats_private.url, again, layout) as w2:

        async def replayed() -> bool:
            return w2.metric("ofa_bridge_duplicates_dropped_total", {"group": "WC1"}) >= n

        await wait_until(replayed, timeout=30, what="the replay to be acknowledged as duplicates")
    assert w2.metric("ofa_bridge_openfactory_published_total") == 0
    assert sdk._nc is not None
    await sdk._nc.flush()
    assert len(sdk.received) == len(records)
    await sdk.close()

    assert [r.subject for r in sdk.received] == ["PROVER3018.Temp"] * len(records)
    assert [r.item_id for r in sdk.received] == ["Temp"] * len(records)
    assert sdk.seqs() == list(range(len(records)))
    # The stored timestamps, read back: aiokafka's RecordMetadata gives every record of a batch
    # the first one's CreateTime.
    stored = {(r.partition, r.offset): r.timestamp for r in await consume_all(infra.kafka, [topic])}
    for rec, meta in zip(sdk.received, metas, strict=False):
        assert "id" not in rec.fields
        assert rec.get("VALUE") == rec.attributes["seq"]
        stamp = stored[(meta.partition, meta.offset)]
        assert rec.attributes["kafka_timestamp"] == openfactory.iso_ms(stamp)
        expected = "broker" if rec.attributes["seq"] % 2 else "producer"
        assert rec.attributes["kafka_timestamp_type"] == expected
        assert rec.attributes["asset_forwarder_timestamp"] >= rec.attributes["kafka_timestamp"]
    got_a = [await every_a.next_msg(timeout=5) for _ in range(2)]
    assert [m.subject for m in got_a] == ["A.a.b", "A.last"]
    assert json.loads(got_a[0].data)["attributes"]["seq"] == 0
    info = await nc.jetstream().stream_info(layout.stream)  # still there
    assert info.state.messages == n
    await nc.close()


async def test_setting_turns_the_openfactory_layout_off(
    infra: Endpoints, nats_private: NatsProcess, unique: str
) -> None:
    s, layout, (topic,) = await bridge_case(
        infra.kafka, unique, ["WC1"], partitions=1, openfactory_subjects=False
    )
    sdk = OpenFactorySubscriber(nats_private.url, "PROVER3018")
    await sdk.start()
    async with InProcessWorker(infra.kafka, nats_private.url, s, layout) as w:
        await produce(
            infra.kafka, topic, [(b"PROVER3018", item_event("Temp", i), []) for i in range(3)]
        )
        await wait_until(
            lambda: stream_holds(nats_private.url, layout.stream, 3), timeout=30, what="stored"
        )
    assert w.metric("ofa_bridge_records_bridged_total", {"group": "WC1"}) == 3
    # The worker closed its connection (flushing what it sent); a round trip after that
    # delivers anything it had published.
    assert sdk._nc is not None
    await sdk._nc.flush()
    assert sdk.received == []
    assert w.metric("ofa_bridge_openfactory_published_total") == 0
    await sdk.close()
