"""Two task helpers every component needs: stop a task, and keep background tasks alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")

log = logging.getLogger("ofa_serving.contract.tasks")


async def cancel_and_wait(task: asyncio.Task[Any] | None, timeout: float | None = None) -> None:
    """Cancel ``task`` (None is fine) and wait until it has finished.

    Its CancelledError is swallowed, any other exception it ends with is logged, not raised: the
    caller is shutting it down. With ``timeout``, gives up waiting after that many seconds.
    If the *caller* is cancelled meanwhile, that cancellation propagates.
    """
    if task is None:
        return
    if not task.done():
        task.cancel()
    waiter = asyncio.shield(asyncio.wait({task}, timeout=timeout))
    await waiter
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.warning(
            "task %s ended with %r while being stopped",
            task.get_name(),
            task.exception(),
            extra={"task": task.get_name()},
        )


class BackgroundTasks:
    """Fire-and-forget tasks that are not forgotten: a strong reference is kept until each ends
    (asyncio keeps only weak ones), an exception is logged once, and :meth:`close` cancels and
    awaits whatever still runs."""

    def __init__(self, name: str = "background", logger: logging.Logger | None = None) -> None:
        self.name = name
        self._log = logger or log
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, R], name: str | None = None) -> asyncio.Task[R]:
        """Run ``coro`` in the background; returns its task."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._log.error(
                "%s task %s failed: %r",
                self.name,
                task.get_name(),
                exc,
                exc_info=exc,
                extra={"task": task.get_name()},
            )

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float | None = None) -> None:
        """Cancel every running task and wait for them (at most ``timeout`` seconds)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(tasks, timeout=timeout)
