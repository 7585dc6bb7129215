"""Exactly once under kill -9: splitter subprocesses are killed at random moments while the
simulator writes; afterwards every input record is in exactly one derived topic exactly once
(read_committed), in per-asset order."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from compose.local_infra import free_port
from compose.simulator import Factory, simulate
from ofa_contract import topics as T
from ofa_contract.naming import group_topic
from tests.helpers import Endpoints
from tests.splitter.support import (
    Names,
    env_for,
    make_input,
    names,
    read_input,
    read_outputs,
    seq_of,
    spawn,
    src_coord,
    wait_caught_up,
    wait_for,
)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Status code and body of a GET on the ops port (0 when nothing answers)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return 0, b""
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        head, _, body = data.partition(b"\r\n\r\n")
        return (int(head.split()[1]) if head else 0), body
    except (OSError, TimeoutError, ValueError, IndexError):
        return 0, b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def http_status(port: int, path: str) -> int:
    """Status code of a GET on the ops port (0 when nothing answers)."""
    return (await http_get(port, path))[0]


class Instance:
    """One `ofa-serving split` subprocess with its own ops port."""

    def __init__(self, infra: Endpoints, n: Names, log: Path, **env: str) -> None:
        self.infra, self.n, self.log, self.env = infra, n, log, env
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.port = free_port()
        self.proc = await spawn(env_for(self.infra.kafka, self.n, self.port, **self.env), self.log)

    async def wait_ready(self, timeout: float = 60) -> None:
        async def ready() -> bool:
            assert self.proc is not None and self.proc.returncode is None, self.tail()
            return await http_status(self.port, "/ready") == 200

        await wait_for(ready, timeout, "splitter subprocess ready")

    async def kill9(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


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
    ungrouped = group_topic(T.DEFAULT_GROUP, n.prefix)
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
                group_topic(factory.workcenter[asset], n.prefix): list(range(4, last + 1))
            }
        else:
            assert seqs == {ungrouped: list(range(1, last + 1))}


async def run_chaos(
    infra: Endpoints, unique: str, tmp_path: Path, kills: int, instances: int
) -> None:
    n = names(unique)
    await make_input(infra.kafka, n, partitions=4)
    factory = Factory(12, 3, prefix=f"C{unique}")
    rng = random.Random(unique)
    sim_stop = asyncio.Event()
    sim = asyncio.create_task(
        simulate(factory, infra.kafka, n.input, rate=600, duration=120, stop=sim_stop)
    )
    procs = [Instance(infra, n, tmp_path / f"split{i}.log") for i in range(instances)]
    try:
        for p in procs:
            await p.start()
        for k in range(kills):
            victim = procs[k % instances]
            await victim.wait_ready()
            # A random moment in the middle of the flow: mid-transaction, mid-commit...
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            await victim.kill9()
            await victim.start()
        await end_flow(sim_stop, sim, procs)
        await wait_caught_up(infra.kafka, n, timeout=90)
        status, body = await http_get(procs[0].port, "/metrics")
        assert status == 200
        assert b"ofa_splitter_commit_seconds_bucket" in body
        assert b"ofa_splitter_consumer_lag" in body
        for p in procs:
            assert await p.terminate() == 0, p.tail()
    finally:
        await cleanup(sim_stop, sim, procs)
    inputs, out = await inputs_and_outputs(infra, n)
    check_exactly_once(factory, n, inputs, out)


async def inputs_and_outputs(infra: Endpoints, n: Names) -> tuple[list[Any], list[Any]]:
    """Every input record and every committed derived record of the test."""
    return await read_input(infra.kafka, n.input), await read_outputs(infra.kafka, n)


async def end_flow(sim_stop: asyncio.Event, sim: asyncio.Task[int], procs: list[Instance]) -> None:
    """Stop the simulator (all it wrote is acknowledged) and wait until every instance is ready."""
    sim_stop.set()
    await sim
    for p in procs:
        await p.wait_ready()


async def cleanup(sim_stop: asyncio.Event, sim: asyncio.Task[int], procs: list[Instance]) -> None:
    """Whatever happened: no simulator, no splitter subprocess left."""
    sim_stop.set()
    for p in procs:
        await p.kill9()
    if not sim.done():
        sim.cancel()


async def test_exactly_once_under_kill9(infra: Endpoints, unique: str, tmp_path: Path) -> None:
    await run_chaos(infra, unique, tmp_path, kills=3, instances=1)


async def test_two_instances_one_killed(infra: Endpoints, unique: str, tmp_path: Path) -> None:
    await run_chaos(infra, unique, tmp_path, kills=1, instances=2)


@pytest.mark.slow
async def test_exactly_once_under_many_kills(infra: Endpoints, unique: str, tmp_path: Path) -> None:
    await run_chaos(infra, unique, tmp_path, kills=12, instances=2)
