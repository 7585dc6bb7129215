"""Exactly once under kill -9: splitter subprocesses are killed at random moments while the
simulator writes; afterwards every input record is in exactly one derived topic exactly once
(read_committed), in per-asset order."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from compose.local_infra import free_port
from compose.simulator import Factory, simulate
from ofa_contract.topics import DEFAULT_GROUP
from tests.helpers import Endpoints
from tests.splitter.support import (
    Names,
    make_input,
    names,
    read_input,
    read_outputs,
    seq_of,
    splitter_process,
    src_coord,
    wait_caught_up,
)
from tests.support.procs import ComponentProcess


def instances(
    infra: Endpoints, n: Names, log_dir: Path, count: int, **env: str
) -> list[ComponentProcess]:
    """``count`` splitter subprocesses for the test's names, each with its own ops port."""
    return [
        splitter_process(infra.kafka, n, log_dir, f"split{i}", free_port(), **env)
        for i in range(count)
    ]


async def kill_and_restart(victim: ComponentProcess, rng: random.Random) -> None:
    """At a random moment of the flow (mid-transaction, mid-commit...) kill -9, then restart."""
    await victim.wait_ready()
    await asyncio.sleep(rng.uniform(0.2, 2.0))
    victim.kill()
    victim.start_nowait()


def check_each_once(inputs: list[Any], out: list[Any]) -> None:
    """Every input record in exactly one derived topic, once."""
    coords = Counter(src_coord(r) for r in out)
    dupes = {c: k for c, k in coords.items() if k > 1}
    assert not dupes, f"{len(dupes)} input records written more than once, e.g. {list(dupes)[:5]}"
    missing = {(r.partition, r.offset) for r in inputs} - set(coords)
    assert not missing, f"{len(missing)} input records lost, e.g. {sorted(missing)[:5]}"
    assert len(out) == len(inputs)


def check_exactly_once(factory: Factory, n: Names, inputs: list[Any], out: list[Any]) -> None:
    """Every input record in exactly one derived topic, once, in per-asset order."""
    assert len(inputs) == sum(factory.seq.values())
    check_each_once(inputs, out)
    ungrouped = n.layout.group_topic(DEFAULT_GROUP)
    for asset, last in factory.seq.items():
        key = asset.encode()
        # Within one topic an asset's records share a partition: offset order is write order.
        per_topic: dict[str, list[Any]] = {}
        for r in out:
            if r.key == key:
                per_topic.setdefault(r.topic, []).append(r)
        seqs = {
            t: [seq_of(r) for r in sorted(rs, key=lambda r: r.offset)]
            for t, rs in per_topic.items()
        }
        if asset in factory.workcenter:
            assert seqs.pop(ungrouped) == [1, 2, 3]
            assert seqs == {
                n.layout.group_topic(factory.workcenter[asset]): list(range(4, last + 1))
            }
        else:
            assert seqs == {ungrouped: list(range(1, last + 1))}


async def run_chaos(
    infra: Endpoints,
    unique: str,
    tmp_path: Path,
    kills: int,
    count: int,
    env: dict[str, str] | None = None,
    view: Callable[[list[Any]], list[Any]] | None = None,
) -> None:
    """Kill -9 and restart splitter instances while the simulator writes, then check the
    derived records (as ``view`` shows them: e.g. de-duplicated) are each input once, in order."""
    n = names(unique)
    await make_input(infra.kafka, n, partitions=4)
    factory = Factory(12, 3, prefix=f"C{unique}")
    rng = random.Random(unique)
    sim_stop = asyncio.Event()
    sim = asyncio.create_task(
        simulate(factory, infra.kafka, n.input, rate=600, duration=120, stop=sim_stop)
    )
    procs = instances(infra, n, tmp_path, count, **(env or {}))
    try:
        for p in procs:
            p.start_nowait()
        for k in range(kills):
            await kill_and_restart(procs[k % count], rng)
        await end_flow(sim_stop, sim, procs)
        await wait_caught_up(infra.kafka, n, timeout=90)
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = await client.get(f"{procs[0].ops_url}/metrics")
        assert metrics.status_code == 200
        assert "ofa_splitter_commit_seconds_bucket" in metrics.text
        assert "ofa_splitter_consumer_lag" in metrics.text
        for p in procs:
            assert await p.terminate() == 0, p.log_tail()
    finally:
        await cleanup(sim_stop, sim, procs)
    inputs, out = await inputs_and_outputs(infra, n)
    if view is not None:
        print(f"{len(inputs)} input records, {len(out)} derived records after {kills} kills")
        out = view(out)
    check_exactly_once(factory, n, inputs, out)


async def inputs_and_outputs(infra: Endpoints, n: Names) -> tuple[list[Any], list[Any]]:
    """Every input record and every committed derived record of the test."""
    return await read_input(infra.kafka, n.input), await read_outputs(infra.kafka, n)


async def end_flow(
    sim_stop: asyncio.Event, sim: asyncio.Task[int], procs: list[ComponentProcess]
) -> None:
    """Stop the simulator (all it wrote is acknowledged) and wait until every instance is ready."""
    sim_stop.set()
    await sim
    for p in procs:
        await p.wait_ready()


async def cleanup(
    sim_stop: asyncio.Event, sim: asyncio.Task[int], procs: list[ComponentProcess]
) -> None:
    """Whatever happened: no simulator, no splitter subprocess left."""
    sim_stop.set()
    for p in procs:
        p.kill()
    if not sim.done():
        sim.cancel()


async def test_exactly_once_under_kill9(infra: Endpoints, unique: str, tmp_path: Path) -> None:
    await run_chaos(infra, unique, tmp_path, kills=3, count=1)


async def test_two_instances_one_killed(infra: Endpoints, unique: str, tmp_path: Path) -> None:
    await run_chaos(infra, unique, tmp_path, kills=1, count=2)


@pytest.mark.slow
async def test_exactly_once_under_many_kills(infra: Endpoints, unique: str, tmp_path: Path) -> None:
    await run_chaos(infra, unique, tmp_path, kills=12, count=2)
