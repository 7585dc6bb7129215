"""Waiting for a dependency (Kafka, NATS) at start-up: one policy for every process.

Retry with capped exponential back-off while ``stop`` is not set; say once what is awaited and
which variable to change, then only at growing intervals; return at once on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

R = TypeVar("R")


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Capped exponential back-off: ``first``, ``first*factor``, ... up to ``cap`` seconds."""

    first: float = 0.5
    factor: float = 2.0
    cap: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.cap, self.first * self.factor ** max(0, attempt - 1))


#: Start-up waits: 0.5 s, 1 s, 2 s... capped at 10 s.
DEFAULT_BACKOFF = Backoff()


async def wait_for_service(
    what: str,
    variable: str,
    probe: Callable[[], Awaitable[R]],
    stop: asyncio.Event,
    log: logging.Logger,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    fatal: tuple[type[BaseException], ...] = (),
    on_waiting: Callable[[str], None] | None = None,
) -> R | None:
    """Call ``probe`` until it returns; the result, or None when ``stop`` was set first.

    ``what`` names the dependency ("Kafka at 127.0.0.1:9092") and ``variable`` the setting that
    points at it ("KAFKA_BOOTSTRAP_SERVERS"). The first failure logs one warning naming both;
    later failures log again only at attempts 2, 4, 8, ... (growing intervals); success after a
    failure logs once. ``probe`` must clean up after itself when it fails; it is cancelled when
    ``stop`` is set while it runs. Exceptions in ``fatal`` (configuration errors) propagate.
    ``on_waiting(reason)`` is told each failure, e.g. to report it on ``/ready``.
    """
    attempt = 0
    started = time.monotonic()
    while not stop.is_set():
        attempt += 1
        try:
            result = await _unless_stopped(probe, stop)
        except fatal:
            raise
        except Exception as exc:
            reason = _describe(exc)
            if on_waiting is not None:
                on_waiting(f"waiting for {what} ({variable}): {reason}")
            if attempt & (attempt - 1) == 0:  # 1, 2, 4, 8...: fewer lines the longer it lasts
                log.warning(
                    "waiting for %s (%s): %s",
                    what,
                    variable,
                    reason,
                    extra={"variable": variable, "attempt": attempt},
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.delay(attempt))
            continue
        if result is _STOPPED:
            return None
        if attempt > 1:
            waited = round(time.monotonic() - started, 1)
            log.info("%s is reachable after %s s", what, waited, extra={"waited_s": waited})
        return result  # type: ignore[return-value]
    return None


_STOPPED = object()


def _describe(exc: BaseException) -> str:
    """``Name: message``, without naming the type twice (aiokafka's errors already start their
    text with it: ``KafkaConnectionError: Unable to bootstrap ...``)."""
    name, text = type(exc).__name__, str(exc)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


async def _unless_stopped(probe: Callable[[], Awaitable[R]], stop: asyncio.Event) -> R | object:
    """Run ``probe``; if ``stop`` is set first, cancel it and return :data:`_STOPPED`."""

    async def call() -> R:
        return await probe()

    task = asyncio.ensure_future(call())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():  # stopped, or the caller itself was cancelled
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return _STOPPED
