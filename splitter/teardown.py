"""Closing Kafka clients within a bound, whatever state the cluster is in.

aiokafka's ``stop()`` flushes a producer's pending batches and leaves a consumer's group; with
the broker that holds them dead or cut off, both wait for request timeouts and retries (the
splitter was seen hanging in its shutdown for minutes, ``/ready`` still 200). Each close here
gets ``timeout`` seconds; what is not done by then is abandoned: its background tasks are
cancelled and its connections closed, so that an abandoned consumer cannot keep its group
membership alive with heartbeats while the process rebuilds a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ofa_contract.runtime import get_logger

log = get_logger("splitter", __name__)


async def bounded(step: Awaitable[Any], timeout: float, what: str) -> bool:
    """Await ``step`` for at most ``timeout`` seconds; False (logged) when it failed or timed
    out. Never raises, except CancelledError of the caller."""
    try:
        await asyncio.wait_for(step, timeout)
        return True
    except TimeoutError:
        log.warning("gave up waiting to close", extra={"what": what, "timeout_s": timeout})
    except Exception as exc:
        log.warning("error while closing", extra={"what": what, "error": repr(exc)})
    return False


async def stop_producer(producer: AIOKafkaProducer, timeout: float, what: str) -> None:
    """Stop ``producer``; after ``timeout`` drop its unsent batches and close its connections."""
    # aiokafka internals (0.14): the sender task is what keeps retrying the batches; a fenced
    # producer's ended with ProducerFenced, which nobody retrieves (asyncio logs it as an
    # error at exit: the failure is already reported by the supervisor).
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    stopped = await bounded(producer.stop(), timeout, what)
    if isinstance(task, asyncio.Task) and task.done() and not task.cancelled():
        task.exception()
    if stopped:
        return
    if isinstance(task, asyncio.Task) and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), 1)
    await bounded(producer.client.close(), 2, f"{what} connections")


async def stop_consumer(consumer: AIOKafkaConsumer, timeout: float, what: str) -> None:
    """Stop ``consumer`` (leaving its group); after ``timeout`` stop its heartbeat and
    coordination tasks and close its connections, so the group expires the member."""
    if await bounded(consumer.stop(), timeout, what):
        return
    # aiokafka internals (0.14): without this the heartbeat task of the abandoned coordinator
    # would keep the old member (and its partitions) in the group.
    coordinator = getattr(consumer, "_coordinator", None)
    for name in ("_heartbeat_task", "_coordination_task", "_commit_refresh_task"):
        task = getattr(coordinator, name, None)
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None:
        await bounded(fetcher.close(), 2, f"{what} fetcher")
    client = getattr(consumer, "_client", None)
    if client is not None:
        await bounded(client.close(), 2, f"{what} connections")
