"""edge.fanout.Wakeup: the stream's one-waiter event (pure logic on the running loop)."""

from __future__ import annotations

import asyncio

import pytest

from edge.fanout import Wakeup


async def test_wait_returns_at_once_when_set_and_after_a_later_set() -> None:
    w = Wakeup()
    w.set()
    await asyncio.wait_for(w.wait(), 1)  # already set
    w.clear()
    assert not w.is_set()
    waiter = asyncio.create_task(w.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    w.set()
    await asyncio.wait_for(waiter, 1)
    assert w.is_set()


async def test_a_timed_out_wait_leaves_it_usable() -> None:
    w = Wakeup()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await w.wait()
    w.set()  # nobody waits: no error from the cancelled future
    await asyncio.wait_for(w.wait(), 1)
