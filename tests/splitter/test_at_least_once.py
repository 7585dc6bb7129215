"""The splitter's at_least_once mode (``SPLIT_DELIVERY=at_least_once``): nothing lost under
kill -9, copies only after a crash, and the bridge's de-duplication by source coordinates
(bridge.dedupe, applied here per derived partition as the bridge does) gives back each input
record once, in per-asset order; the table restore and graceful stops work as in exactly_once."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from bridge.dedupe import SourceDedupe, source_of
from compose.simulator import Factory, simulate
from splitter.engine import Splitter
from tests.helpers import Endpoints
from tests.splitter.support import (
    committed_offsets,
    input_ends,
    make_input,
    names,
    read_outputs,
    rec,
    running_splitter,
    seq_of,
    settings_for,
    src_coord,
    wait_caught_up,
)
from tests.splitter.test_crash import run_chaos
from tests.support.kafka import produce
from tests.support.wait import wait_until

ALO = {"SPLIT_DELIVERY": "at_least_once", "SPLIT_OFFSET_COMMIT_INTERVAL_MS": "300"}


def dedupe_like_the_bridge(out: list[Any]) -> list[Any]:
    """The records a bridge publishes: per derived partition, in offset order, a record whose
    source offset is not above the highest one seen from its source partition is dropped."""
    parts: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for r in out:
        parts[(r.topic, r.partition)].append(r)
    kept = []
    for recs in parts.values():
        d = SourceDedupe()
        for r in sorted(recs, key=lambda r: r.offset):
            src = source_of(r.headers)
            assert src is not None, r
            if d.admit(src):
                kept.append(r)
    return kept


async def test_at_least_once_under_kill9_nothing_lost_copies_dropped_by_source(
    infra: Endpoints, unique: str, tmp_path: Path
) -> None:
    # No loss, and each input record once, in per-asset order, after the bridge's de-dup
    # (the table restore after each restart put every asset back in its workcenter's topic).
    await run_chaos(infra, unique, tmp_path, kills=3, count=1, env=ALO, view=dedupe_like_the_bridge)


def _sent(splitter: Splitter) -> float:
    """Input records this splitter processed (sent on), over every partition."""
    return sum(
        sample.value
        for metric in splitter.metrics.records_in.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def test_at_least_once_restore_and_graceful_stop_leave_no_copies(
    infra: Endpoints, unique: str
) -> None:
    n = names(unique)
    await make_input(infra.kafka, n)
    factory = Factory(6, 3, prefix=f"R{unique}", helpers=False)
    await simulate(factory, infra.kafka, n.input, rate=5000, count=60)
    settings = settings_for(n, delivery="at_least_once", offset_commit_interval_ms=200)
    async with running_splitter(infra.kafka, n, settings):
        await wait_caught_up(infra.kafka, n)
    later = [rec(factory.event()) for _ in range(60)]
    await produce(infra.kafka, n.input, later)
    # No periodic commit in this run: only the graceful stop can commit what it sends.
    lazy = settings_for(n, delivery="at_least_once", offset_commit_interval_ms=600_000)
    async with running_splitter(infra.kafka, n, lazy) as splitter:
        await wait_until(lambda: _sent(splitter) >= 60, timeout=60, what="60 records sent")
        assert splitter.metrics.table_size._value.get() == len(factory.assets)
        await produce(infra.kafka, n.input, [rec(factory.event()) for _ in range(30)])
        await wait_until(lambda: _sent(splitter) >= 90, timeout=60, what="90 records sent")
    ends = await input_ends(infra.kafka, n.input)
    got = await committed_offsets(infra.kafka, n.group_id)
    assert {tp: got.get(tp, 0) for tp in ends} == ends
    out = await read_outputs(infra.kafka, n)
    assert len({src_coord(r) for r in out}) == sum(factory.seq.values()) == len(out)
    for asset in factory.assets:
        topic = n.layout.group_topic(factory.workcenter[asset])
        seqs = sorted(seq_of(r) for r in out if r.key == asset.encode() and r.topic == topic)
        assert seqs == list(range(4, factory.seq[asset] + 1))
