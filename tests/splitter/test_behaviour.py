"""State restore, regrouping, new groups, default group and dead letters, with splitters running
in the test's event loop against the real broker."""

from __future__ import annotations

import msgspec

from compose.simulator import Factory, openfactory_record
from ofa_contract import topics as contract_topics
from ofa_contract.layout import KafkaHeaders
from tests.helpers import Endpoints
from tests.splitter.support import (
    by_topic,
    header,
    list_topics,
    make_input,
    names,
    read_outputs,
    rec,
    running_splitter,
    seeded_input,
    seq_of,
    settings_for,
    src_coord,
    wait_caught_up,
)
from tests.support.kafka import consume_all, produce
from tests.support.samples import load_samples, sample_record


async def test_restore_after_restart_routes_without_the_workcenter_record(
    infra: Endpoints, unique: str
) -> None:
    factory = Factory(6, 3, prefix=f"S{unique}", helpers=False)
    n = (await seeded_input(infra.kafka, unique, factory, count=60)).n
    async with running_splitter(infra.kafka, n):
        await wait_caught_up(infra.kafka, n)
    # The table is in the changelog, committed: one entry per asset with its workcenter.
    table: dict[str, str] = {}
    for r in await consume_all(infra.kafka, [n.changelog]):
        table[r.key.decode()] = msgspec.json.decode(r.value, type=contract_topics.AssetGroup).group
    assert table == factory.workcenter
    # A graceful stop leaves nothing open or aborted: uncommitted reads see the same records.
    derived = await list_topics(infra.kafka, n.prefix)
    committed = await consume_all(infra.kafka, derived)
    uncommitted = await consume_all(infra.kafka, derived, read_committed=False)
    assert len(committed) == len(uncommitted) == sum(factory.seq.values())
    # After the restart only the restored table knows where these assets belong.
    later = [rec(factory.event()) for _ in range(60)]
    await produce(infra.kafka, n.input, later)
    async with running_splitter(infra.kafka, n) as splitter:
        await wait_caught_up(infra.kafka, n)
        assert splitter.metrics.table_size._value.get() == len(factory.assets)
    out = await read_outputs(infra.kafka, n)
    for asset in factory.assets:
        topic = n.layout.group_topic(factory.workcenter[asset])
        seqs = sorted(seq_of(r) for r in out if r.key == asset.encode() and r.topic == topic)
        assert seqs == list(range(4, factory.seq[asset] + 1))
    assert len({src_coord(r) for r in out}) == sum(factory.seq.values()) == len(out)


async def test_regrouping_moves_the_asset_from_its_workcenter_record_on(
    infra: Endpoints, unique: str
) -> None:
    factory = Factory(3, 2, prefix=f"G{unique}", helpers=False)
    asset = factory.assets[0]
    old = factory.workcenter[asset]
    n = (await seeded_input(infra.kafka, unique, factory, count=30)).n
    async with running_splitter(infra.kafka, n) as splitter:
        await wait_caught_up(infra.kafka, n)
        move = factory.move(asset, "Paint Shop.2")
        move_seq = factory.seq[asset]
        after = [rec(move)] + [
            rec(openfactory_record(asset, factory._next(asset), "Zact", i, "Position", "Samples"))
            for i in range(5)
        ]
        await produce(infra.kafka, n.input, after)
        await wait_caught_up(infra.kafka, n)
        # The new group got a topic and an announcement at runtime, without a restart.
        new_topic = n.layout.group_topic("Paint Shop.2")
        assert new_topic in await list_topics(infra.kafka, n.prefix)
        anns = {
            r.key.decode(): msgspec.json.decode(r.value, type=contract_topics.GroupAnnouncement)
            for r in await consume_all(infra.kafka, [n.groups])
        }
        assert anns["Paint Shop.2"].topic == new_topic
        assert anns["Paint Shop.2"].partitions == 2
        assert set(anns) == {"WC1", "WC2", "Paint Shop.2", contract_topics.DEFAULT_GROUP}
        assert splitter.metrics.records_out.labels("Paint Shop.2")._value.get() == 6
    topics = by_topic(await read_outputs(infra.kafka, n))
    key = asset.encode()
    in_new = [seq_of(r) for r in topics[new_topic] if r.key == key]
    in_old = [seq_of(r) for r in topics[n.layout.group_topic(old)] if r.key == key]
    assert in_new == list(range(move_seq, move_seq + 6))  # the workcenter record itself first
    assert in_old == list(range(4, move_seq))
    first = next(r for r in topics[new_topic] if r.key == key)
    assert header(first, KafkaHeaders.GROUP) == b"Paint Shop.2"
    assert msgspec.json.decode(first.value)["ID"] == "workcenter"


async def test_ungrouped_assets_dropped_and_counted_when_no_default(
    infra: Endpoints, unique: str
) -> None:
    factory = Factory(2, 1, prefix=f"D{unique}", helpers=True)
    seeded = await seeded_input(infra.kafka, unique, factory, count=20)
    n, written = seeded.n, seeded.written
    settings = settings_for(n, drop_ungrouped=True)
    async with running_splitter(infra.kafka, n, settings) as splitter:
        await wait_caught_up(infra.kafka, n)
        dropped = splitter.metrics.dropped._value.get()
    out = await read_outputs(infra.kafka, n)
    # Helpers (no workcenter ever) and the 3 records before each asset's workcenter record.
    expected_dropped = sum(factory.seq[h] for h in factory.helpers) + 3 * len(factory.assets)
    assert dropped == expected_dropped
    assert len(out) == written - expected_dropped
    assert {r.topic for r in out} == {n.layout.group_topic("WC1")}


async def test_every_bad_kind_goes_to_the_dead_letter_topic(infra: Endpoints, unique: str) -> None:
    n = names(unique)
    await make_input(infra.kafka, n, partitions=1)
    samples = load_samples()
    records = [sample_record(s) for s in samples]
    bad_notes = [s["note"] for s in samples if s["note"].startswith("BAD")]
    # A good record after the bad ones proves the partition keeps flowing.
    records.append((b"PROVER3018", b'{"ID":"avail","VALUE":"AVAILABLE"}', []))
    metas = await produce(infra.kafka, n.input, records)
    async with running_splitter(infra.kafka, n) as splitter:
        await wait_caught_up(infra.kafka, n)
        dlq_metric = {
            kind: splitter.metrics.dlq.labels(kind)._value.get()
            for kind in ("not_json", "not_object", "no_id", "no_key", "key_not_utf8", "too_large")
        }
    dlq = await consume_all(infra.kafka, [n.dlq])
    kinds = sorted(header(r, KafkaHeaders.ERROR_KIND).decode() for r in dlq)  # type: ignore[union-attr]
    assert kinds == sorted(
        ["not_json", "not_object", "no_id", "no_key", "key_not_utf8", "too_large"]
    )
    assert len(bad_notes) == len(dlq)
    assert all(v == 1 for v in dlq_metric.values()), dlq_metric
    offsets = {m.offset: records[i] for i, m in enumerate(metas)}
    for r in dlq:
        assert header(r, KafkaHeaders.ERROR)
        assert header(r, KafkaHeaders.SRC_TOPIC) == n.input.encode()
        src = offsets[int(header(r, KafkaHeaders.SRC_OFFSET))]  # type: ignore[arg-type]
        # The dead letter is the original record, whole (the 2 MiB one included).
        assert (r.key, r.value) == (src[0], src[1])
    out = await read_outputs(infra.kafka, n)
    assert len(out) == len(records) - len(dlq)
    assert out and any(r.key == b"PROVER3018" and b"AVAILABLE" in r.value for r in out)
    # Groups from the samples: names illegal in a topic are encoded, not rejected.
    assert n.layout.group_topic("Paint Shop.2") in {r.topic for r in out}
