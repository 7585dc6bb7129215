"""Exactly once while the UNS map moves assets, under kill -9: two splitter subprocesses grouping
by the map are killed at random moments, one of them right after the map moved half the assets.
Every input record ends in exactly one derived topic once; each asset's records are in its old
group up to some record and in its new group from there on (a replayed cycle groups by the map
as read at replay time, never back); the router's index agrees with the splitter."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from compose.simulator import Factory, simulate
from router.group_index import GroupIndex
from tests.helpers import Endpoints
from tests.splitter.support import (
    Names,
    make_input,
    names,
    produce_to,
    seq_of,
    uns_value,
    wait_caught_up,
)
from tests.splitter.test_crash import (
    check_each_once,
    cleanup,
    end_flow,
    inputs_and_outputs,
    instances,
    kill_and_restart,
)
from tests.splitter.test_uns import last_groups, record, seqs_by_group
from tests.support.kafka import create_topics
from tests.support.wait import wait_until


async def test_uns_regroup_under_kill9(infra: Endpoints, unique: str, tmp_path: Path) -> None:
    n = names(unique)
    uns = n.uns
    await make_input(infra.kafka, n, partitions=4)
    await create_topics(infra.kafka, [uns], partitions=2, config={"cleanup.policy": "compact"})
    factory = Factory(8, 2, prefix=f"K{unique}", helpers=False)
    first = {a: f"U{i % 2 + 1}" for i, a in enumerate(factory.assets)}
    moved = set(factory.assets[::2])
    await produce_to(infra.kafka, uns, [(a, uns_value(a, g), None) for a, g in first.items()])
    rng = random.Random(unique)
    sim_stop = asyncio.Event()
    sim = asyncio.create_task(
        simulate(factory, infra.kafka, n.input, rate=400, duration=120, stop=sim_stop)
    )
    procs = instances(infra, n, tmp_path, 2)
    try:
        for p in procs:
            p.start_nowait()
        for k in range(4):
            if k == 2:
                # The map moves half the assets; the next kill may hit right after it.
                await procs[k % 2].wait_ready()
                await produce_to(
                    infra.kafka, uns, [(a, uns_value(a, "U3"), None) for a in sorted(moved)]
                )
            await kill_and_restart(procs[k % 2], rng)
        await end_flow(sim_stop, sim, procs)
        # One more record per asset, written after every instance has restored the new map.
        final = []
        for a in factory.assets:
            factory.seq[a] += 1
            final.append((a, record(a, factory.seq[a]), None))
        await produce_to(infra.kafka, n.input, final)
        await wait_caught_up(infra.kafka, n, timeout=90)
        for p in procs:
            assert await p.terminate() == 0, p.log_tail()
    finally:
        await cleanup(sim_stop, sim, procs)
    inputs, out = await inputs_and_outputs(infra, n)
    check_each_once(inputs, out)
    for asset, last in factory.seq.items():
        check_one_switch(out, n, asset, first[asset], "U3" if asset in moved else None, last)
    await check_index_agrees(infra, n, last_groups(out, n))


def check_one_switch(
    out: list[Any], n: Names, asset: str, old: str, new: str | None, last: int
) -> None:
    """The asset's records 1..k are in ``old``, k+1..last in ``new`` (k = last when None)."""
    got = seqs_by_group(out, n, asset)
    head = got.pop(old, [])
    assert head == list(range(1, len(head) + 1)), (asset, old, head[:20])
    if new is None:
        assert not got and len(head) == last, (asset, got)
        return
    assert set(got) == {new}, (asset, got)
    assert got[new] == list(range(len(head) + 1, last + 1)), (asset, got[new][:20])
    # Every record of one topic in offset order: the order the asset's records were written.
    for topic_recs in _by_topic(out, asset).values():
        seqs = [seq_of(r) for r in sorted(topic_recs, key=lambda r: r.offset)]
        assert seqs == sorted(seqs), (asset, seqs[:20])


def _by_topic(out: list[Any], asset: str) -> dict[str, list[Any]]:
    got: dict[str, list[Any]] = {}
    for r in out:
        if r.key == asset.encode():
            got.setdefault(r.topic, []).append(r)
    return got


async def check_index_agrees(infra: Endpoints, n: Names, expected: dict[str, str | None]) -> None:
    """The router's group index, restored from the changelog, names each asset's last group."""
    index = GroupIndex(infra.kafka, n.changelog, n.groups)
    await index.start()
    try:

        async def loaded() -> bool:
            return index.caught_up.is_set()

        await wait_until(loaded, timeout=30, what="the group index to load")
        assert {a: index.group_of(a) for a in expected} == expected
    finally:
        await index.stop()
