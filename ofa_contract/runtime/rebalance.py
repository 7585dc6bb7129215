"""A rebalance listener that does not lose exceptions (aiokafka logs and swallows them)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from aiokafka import ConsumerRebalanceListener, TopicPartition

#: Sync or async; receives the partitions as a set.
PartitionsCallback = Callable[[set[TopicPartition]], Awaitable[None] | None]


class GuardedRebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Adapts two async callbacks to aiokafka's listener.

    aiokafka catches and logs any exception a listener raises, then carries on as if the
    assignment had been handled; ``on_error(exc, phase)`` (phase ``"assigned"`` or ``"revoked"``)
    lets the component fail loudly instead (e.g. set a fault that stops the process).
    """

    def __init__(
        self,
        on_assigned: PartitionsCallback,
        on_revoked: PartitionsCallback,
        on_error: Callable[[BaseException, str], None],
    ) -> None:
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_error = on_error

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Called by aiokafka before a rebalance."""
        await self._call(self._on_revoked, revoked, "revoked")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Called by aiokafka after a rebalance."""
        await self._call(self._on_assigned, assigned, "assigned")

    async def _call(
        self, callback: PartitionsCallback, parts: set[TopicPartition], phase: str
    ) -> None:
        try:
            result = callback(set(parts))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            self._on_error(exc, phase)
