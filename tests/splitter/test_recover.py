"""The splitter recovers in-process from a fatal Kafka error: fenced by another producer with its
transactional id (what a broker fault on a cluster does to it), it says so once, turns /ready
false with the reason, rebuilds itself from the committed state, turns /ready true and processes
again, every record still exactly once; SIGTERM afterwards exits 0."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from compose.local_infra import free_port
from compose.simulator import Factory, simulate
from tests.helpers import Endpoints
from tests.splitter.support import (
    Names,
    make_input,
    names,
    read_input,
    read_outputs,
    splitter_process,
    wait_caught_up,
)
from tests.splitter.test_crash import check_each_once
from tests.support.procs import ComponentProcess
from tests.support.wait import wait_until

PARTITIONS = 2


async def fence(bootstrap: str, n: Names) -> None:
    """Initialise a producer with each input partition's transactional id: the broker bumps the
    epoch, so the splitter's producers are fenced on their next transaction."""
    for p in range(PARTITIONS):
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{n.names.transactional_id_prefix}-{n.input}-{p}",
        )
        await producer.start()
        await producer.stop()


class ReadyWatch:
    """Polls /ready and remembers the sequence of distinct answers (status, detail)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[int, str]] = []

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"{self.url}/ready")
                    if not self.seen or self.seen[-1][0] != r.status_code:
                        self.seen.append((r.status_code, r.text[:300]))
                await asyncio.sleep(0.05)


async def restarts(proc: ComponentProcess) -> float:
    """The sum of ``ofa_splitter_restarts_total`` over its causes."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{proc.ops_url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ofa_splitter_restarts_total{")
    )


async def test_recovers_in_process_after_being_fenced(
    infra: Endpoints, unique: str, tmp_path: Path
) -> None:
    n = names(unique)
    await make_input(infra.kafka, n, partitions=PARTITIONS)
    factory = Factory(6, 2, prefix=f"R{unique}")
    proc = splitter_process(infra.kafka, n, tmp_path, "split-recover", free_port())
    proc.start_nowait()
    watch = ReadyWatch(proc.ops_url or "")
    watcher: asyncio.Task[None] | None = None
    try:
        await simulate(factory, infra.kafka, n.input, rate=200, duration=1.0)
        await proc.wait_ready()
        await wait_caught_up(infra.kafka, n)
        assert await restarts(proc) == 0
        watcher = asyncio.create_task(watch.run())
        await wait_until(lambda: bool(watch.seen), timeout=10, what="a /ready answer")
        assert watch.seen[-1][0] == 200, watch.seen

        await fence(infra.kafka, n)
        # The next transactions are refused: the splitter must rebuild itself, not exit.
        await simulate(factory, infra.kafka, n.input, rate=200, duration=1.0)

        async def recovered() -> bool:
            assert proc.returncode is None, proc.log_tail()
            return await restarts(proc) >= 1 and watch.seen[-1][0] == 200

        await wait_until(recovered, timeout=90, what="the splitter to restart and be ready")
        await wait_caught_up(infra.kafka, n, timeout=90)
        codes = [code for code, _ in watch.seen]
        assert codes[0] == 200 and 503 in codes and codes[-1] == 200, watch.seen
        not_ready = next(text for code, text in watch.seen if code == 503)
        assert "recovering from" in not_ready or "failed" in not_ready, not_ready
        log = proc.log_text()
        assert log.count("restarting it in-process") == await restarts(proc), proc.log_tail()
        assert "Fenced" in log or "InvalidProducerEpoch" in log, proc.log_tail()
        assert await proc.terminate(timeout=30) == 0, proc.log_tail()
    finally:
        if watcher is not None:
            watcher.cancel()
        await proc.stop()
    inputs = await read_input(infra.kafka, n.input)
    assert len(inputs) == sum(factory.seq.values())
    check_each_once(inputs, await read_outputs(infra.kafka, n))
