"""The one waiting helper of the tests: poll a condition, wake early on an event."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

R = TypeVar("R")


async def wait_until(
    cond: Callable[[], R | Awaitable[R]],
    *,
    timeout: float = 30.0,
    what: str = "",
    interval: float = 0.1,
    changed: asyncio.Event | None = None,
) -> R:
    """Return ``cond()``'s first truthy result (``cond`` sync or async).

    Between checks it waits ``interval`` seconds or, when given, until ``changed`` is set
    (cleared before each check), so an event-driven caller is woken at once. Fails with an
    AssertionError naming ``what`` (and the last falsy result) after ``timeout`` seconds; the
    timeout is a safety net, not a synchronisation point.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if changed is not None:
            changed.clear()
        result = cond()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        last = result
        left = deadline - time.monotonic()
        if left <= 0:
            name = what or getattr(cond, "__name__", "condition")
            raise AssertionError(f"timed out after {timeout}s waiting for {name} (last: {last!r})")
        if changed is not None:
            try:
                await asyncio.wait_for(changed.wait(), min(left, max(interval, 1.0)))
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(min(interval, left))
