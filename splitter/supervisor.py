"""Keeps one splitter running in its process: wait for Kafka, start, run; after a failure that
can heal, tear it down (bounded), say why on ``/ready``, back off, and build it again.

On a cluster, broker faults are routine: a killed or cut-off broker makes transactions fail
(``ProducerFenced`` once the coordinator moved and bumped the epoch, ``InvalidTxnState``,
``KafkaError`` during a commit, a restore that timed out). The in-memory state of a failed
splitter may hold groups of aborted records, so it is never repaired in place: a new
:class:`~splitter.engine.Splitter` is built from the committed changelog and offsets, exactly as a
restarted process would, and the old one is only closed (its abandoned clients cannot touch the
new one). Only :class:`~splitter.engine.SplitterConfigError` and topic errors that settings must
fix end the process (exit 1). SIGTERM is honoured in every state: while waiting, starting,
running (the open cycle gets ``stop_grace_s`` to commit), closing and backing off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ofa_contract.runtime import get_logger, wait_for_service
from ofa_contract.runtime.waiting import Backoff
from splitter.engine import Splitter, SplitterConfigError
from splitter.metrics import SplitterMetrics
from splitter.topic_admin import TopicError, probe_kafka

log = get_logger("splitter", __name__)

#: Back-off between in-process restarts: 1 s, 2 s, 4 s... capped at 30 s.
RESTART_BACKOFF = Backoff(first=1.0, factor=2.0, cap=30.0)
#: A splitter that ran this long before failing starts the back-off from its first step again.
HEALTHY_RUN_S = 60.0


def is_permanent(exc: BaseException) -> bool:
    """True for failures a restart cannot heal (anywhere in the exception's cause chain)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SplitterConfigError):
            return True
        if isinstance(seen, TopicError) and seen.permanent:
            return True
        seen = seen.__cause__
    return False


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of the cause chain (what Kafka said, not our wrapper)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


class Supervisor:
    """Runs splitters built by ``build`` one after the other until stopped or failed for good."""

    def __init__(
        self,
        build: Callable[[], Splitter],
        metrics: SplitterMetrics,
        bootstrap: str,
        probe_topic: str,
        *,
        backoff: Backoff = RESTART_BACKOFF,
        stop_grace_s: float = 10.0,
        close_timeout_s: float = 10.0,
        probe: Callable[[str, str], Awaitable[None]] = probe_kafka,
    ) -> None:
        self._build = build
        self._metrics = metrics
        self._bootstrap = bootstrap
        self._probe_topic = probe_topic
        self._backoff = backoff
        self._stop_grace_s = stop_grace_s
        self._close_timeout_s = close_timeout_s
        self._probe = probe
        self._splitter: Splitter | None = None
        self._recovering = ""
        self._waiting = ""
        #: In-process restarts so far (also the metric ``ofa_splitter_restarts_total``).
        self.restarts = 0

    async def ready_issues(self) -> dict[str, str]:
        """What keeps this process from being ready (empty dict = ready)."""
        if self._recovering:
            return {"splitter": self._recovering}
        if self._splitter is None:
            return {"splitter": self._waiting or "starting"}
        return await self._splitter.ready_issues()

    def _note_waiting(self, reason: str) -> None:
        self._waiting = reason
        if self._splitter is not None:
            self._splitter.note_waiting(reason)

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set (0) or a failure that cannot heal (1)."""
        attempt = 0
        while not stop.is_set():
            splitter = self._build()
            self._splitter = splitter
            began = time.monotonic()
            failure: Exception | None = None
            try:
                await self._run_once(splitter, stop)
            except Exception as exc:
                failure = exc
                self._recovering = f"failed ({_describe(exc)}); closing"
            finally:
                await splitter.close(self._close_timeout_s)
            if failure is None:
                return 0
            if stop.is_set():
                log.info("stopped", extra={"error": _describe(failure)})
                return 0
            if is_permanent(failure):
                log.error("splitter failed; not restarting", extra={"error": _describe(failure)})
                return 1
            attempt = 1 if time.monotonic() - began > HEALTHY_RUN_S else attempt + 1
            delay = self._backoff.delay(attempt)
            self._restarted(failure, attempt, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return 0

    def _restarted(self, failure: Exception, attempt: int, delay: float) -> None:
        cause = root_cause(failure)
        self.restarts += 1
        self._metrics.restarts.labels(type(cause).__name__).inc()
        self._recovering = (
            f"recovering from {_describe(failure)}: restart {attempt} in {delay:.0f}s"
        )
        log.warning(
            "splitter failed; restarting it in-process",
            extra={
                "error": _describe(failure),
                "cause": type(cause).__name__,
                "attempt": attempt,
                "retry_in_s": delay,
            },
        )

    async def _run_once(self, splitter: Splitter, stop: asyncio.Event) -> None:
        """Wait for Kafka, start, run until ``stop``; failures propagate."""

        async def probe() -> bool:
            await self._probe(self._bootstrap, self._probe_topic)
            return True

        reachable = await wait_for_service(
            f"Kafka at {self._bootstrap}",
            "KAFKA_BOOTSTRAP_SERVERS",
            probe,
            stop,
            log,
            on_waiting=self._note_waiting,
        )
        if not reachable:
            return
        if not await _unless_stopped(splitter.start(), stop, grace=0):
            log.info("stopped before the splitter started")
            return
        self._recovering = ""
        self._waiting = ""
        log.info("splitter started", extra={"input_topic": self._probe_topic})
        # On SIGTERM the open cycle is committed first; one stuck on a dead broker is
        # cancelled after the grace (close() aborts it, or the broker does at its timeout).
        if await _unless_stopped(splitter.run(stop), stop, grace=self._stop_grace_s):
            log.info("splitter stopped")


async def _unless_stopped(
    work: Coroutine[Any, Any, None], stop: asyncio.Event, *, grace: float
) -> bool:
    """Await ``work``; True when it finished, False when ``stop`` came first and it did not
    finish within ``grace`` seconds after (it is then cancelled). Its failure propagates."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and grace > 0:
            await asyncio.wait({task}, timeout=grace)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.cancelled():
        return False
    task.result()
    return True


def _describe(exc: BaseException) -> str:
    cause = root_cause(exc)
    text = repr(exc) if cause is exc else f"{exc!r} caused by {cause!r}"
    return text[:500]
