"""The splitter's supervisor as pure logic: a scripted splitter stands in for the real one (whose
recovery on real Kafka is tests/splitter/test_recover.py). It restarts after failures that heal,
exits 1 on those that cannot, reports recovery on /ready, and stops promptly on SIGTERM in every
state: backing off, starting, and running a cycle that never ends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry

from splitter.engine import SplitterConfigError, SplitterError
from splitter.metrics import SplitterMetrics
from splitter.supervisor import Supervisor, is_permanent
from splitter.topic_admin import TopicError
from tests.support.wait import wait_until


class Scripted:
    """Duck-types :class:`splitter.engine.Splitter`: ``start`` and ``run`` do what the script
    says for this build (raise, hang, or return)."""

    def __init__(self, start: Any = None, run: Any = None) -> None:
        self._start, self._run = start, run
        self.closed = False

    async def _do(self, what: Any, stop: asyncio.Event | None = None) -> None:
        if what == "hang":
            await asyncio.Event().wait()
        if isinstance(what, BaseException):
            raise what
        if stop is not None and what is None:
            await stop.wait()

    async def start(self) -> None:
        await self._do(self._start)

    async def run(self, stop: asyncio.Event) -> None:
        await self._do(self._run, stop)

    async def close(self, timeout: float = 10.0) -> None:
        self.closed = True

    async def ready_issues(self) -> dict[str, str]:
        return {}

    def note_waiting(self, reason: str) -> None:
        pass


async def _reachable(bootstrap: str, topic: str) -> None:
    return None


def supervisor(builds: list[Scripted], **kw: Any) -> tuple[Supervisor, SplitterMetrics]:
    it = iter(builds)
    metrics = SplitterMetrics(CollectorRegistry())
    sup = Supervisor(
        lambda: next(it),  # type: ignore[arg-type,return-value]
        metrics,
        "kafka:9092",
        "ofa_assets",
        probe=_reachable,
        **kw,
    )
    return sup, metrics


def _restarts(metrics: SplitterMetrics, cause: str) -> float:
    return float(metrics.restarts.labels(cause)._value.get())


async def test_restarts_after_failures_that_heal_then_stops_with_0() -> None:
    fenced = SplitterError("fenced")
    fenced.__cause__ = ConnectionError("broker gone")
    builds = [Scripted(run=fenced), Scripted(start=TimeoutError("restore")), Scripted()]
    sup, metrics = supervisor(builds, backoff=_fast())
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await wait_until(lambda: sup.restarts == 2, timeout=10, what="two restarts")

    async def ready() -> bool:
        return not await sup.ready_issues()

    await wait_until(ready, timeout=10, what="ready again", interval=0.01)
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0
    assert all(b.closed for b in builds)
    assert _restarts(metrics, "ConnectionError") == 1
    assert _restarts(metrics, "TimeoutError") == 1


async def test_not_ready_with_the_reason_while_backing_off_and_sigterm_ends_the_wait() -> None:
    builds = [Scripted(run=SplitterError("InvalidTxnState"))]
    sup, _ = supervisor(builds)  # the real back-off: 1 s, then 2 s...
    stop = asyncio.Event()
    task = asyncio.create_task(sup.run(stop))
    await wait_until(lambda: sup.restarts == 1, timeout=10, what="a restart")
    issues = await sup.ready_issues()
    assert "recovering from" in issues["splitter"] and "InvalidTxnState" in issues["splitter"]
    started = time.monotonic()
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0
    assert time.monotonic() - started < 0.5


async def test_a_failure_that_cannot_heal_exits_1_without_restarting() -> None:
    sup, _ = supervisor([Scripted(start=SplitterConfigError("changelog has 3 partitions"))])
    assert await asyncio.wait_for(sup.run(asyncio.Event()), 5) == 1
    assert sup.restarts == 0


async def test_sigterm_while_starting_or_in_a_stuck_cycle_stops_promptly() -> None:
    for build, grace in ((Scripted(start="hang"), 10.0), (Scripted(run="hang"), 0.2)):
        sup, _ = supervisor([build], stop_grace_s=grace)
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop))
        await asyncio.sleep(0.05)  # let it reach the hanging call; no event to wait on there
        stop.set()
        assert await asyncio.wait_for(task, 2) == 0
        assert build.closed


def test_permanence_follows_the_cause_chain() -> None:
    wrapped = SplitterError("splitter failed")
    wrapped.__cause__ = TopicError("cannot create topic: InvalidConfig", permanent=True)
    assert is_permanent(wrapped)
    assert not is_permanent(TopicError("cannot create topic: InvalidReplicationFactor"))
    assert not is_permanent(SplitterError("fenced"))


def _fast() -> Any:
    from ofa_contract.runtime.waiting import Backoff

    return Backoff(first=0.01, factor=1.0, cap=0.01)
