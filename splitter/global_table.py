"""A compacted topic read as a global table: every partition, by every splitter instance.

The splitter's own asset -> group table is partitioned like its input (each instance restores
the partitions it owns). A table that OpenFactory writes, such as the UNS map, is keyed by asset
uuid but says nothing about which input partition an asset's records are on (OpenFactory's
gateway producer partitions by CRC32, its other producers by murmur2), so each instance reads
all of it: restored to the end before the first input record is processed, then followed live.
Partitions or the topic itself appearing later are picked up by a periodic metadata look-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from ofa_contract.runtime import cancel_and_wait, get_logger
from splitter.restore import drain_to_end, table_consumer

log = get_logger("splitter", __name__)

#: How often the follower looks for the topic or partitions that appeared since the last look.
METADATA_REFRESH_S = 5.0

Apply = Callable[[bytes | None, bytes | None], None]


class GlobalTable:
    """Restores, then follows, every partition of ``topic``, calling ``apply(key, value)`` for
    each record in partition order; ``partitions(topic)`` answers the partition count (0 when
    the topic does not exist)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        apply: Apply,
        partitions: Callable[[str], Awaitable[int]],
    ) -> None:
        self.topic = topic
        self._apply = apply
        self._partitions = partitions
        self._consumer: AIOKafkaConsumer = table_consumer(bootstrap)
        self._assigned: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        #: Notified after every read of the follower (positions may have moved).
        self._progress = asyncio.Condition()
        self.records = 0
        self.last_error = ""

    async def start(self, timeout: float) -> None:
        """Read the whole topic to its current end, then follow it in the background."""
        await self._consumer.start()
        count = await self._assign_new(timeout)
        if not self._assigned:
            log.warning(
                "table topic not found; it is followed once it appears",
                extra={"topic": self.topic},
            )
        log.info("table restored", extra={"topic": self.topic, "records": count})
        self._task = asyncio.create_task(self._follow(), name=f"table-{self.topic}")

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        await cancel_and_wait(self._task)
        self._task = None
        await self._consumer.stop()

    async def sync(self, timeout: float) -> None:
        """Wait until the follower has read everything the topic holds now.

        Called before processing partitions taken over from another instance: that instance
        may have grouped records by a newer table than this follower has read so far, and an
        asset must not move back to an older group."""
        if not self._assigned:
            return
        consumer = self._consumer
        ends = await consumer.end_offsets(self._assigned)
        deadline = time.monotonic() + timeout
        async with self._progress:
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(
                            f"could not read {self.topic!r} to its end in {timeout}s"
                        )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._progress.wait(), left)

    def issues(self) -> dict[str, str]:
        """What keeps the table from being current (empty when fine)."""
        if self._task is not None and self._task.done():
            return {"table": f"follower of {self.topic!r} stopped"}
        if self.last_error:
            return {"table": f"cannot read {self.topic!r}: {self.last_error}"}
        return {}

    def _record(self, rec: ConsumerRecord[bytes, bytes]) -> None:
        self.records += 1
        self._apply(rec.key, rec.value)

    async def _assign_new(self, timeout: float) -> int:
        """Assign partitions that appeared (Kafka only adds them) and read them to their end,
        keeping the positions of those already followed; return the records read."""
        n = await self._partitions(self.topic)
        if n <= len(self._assigned):
            return 0
        consumer = self._consumer
        positions = {tp: await consumer.position(tp) for tp in self._assigned}
        wanted = [TopicPartition(self.topic, p) for p in range(n)]
        new = wanted[len(self._assigned) :]
        consumer.assign(wanted)
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        self._assigned = wanted
        return await drain_to_end(consumer, new, self._record, timeout=timeout)

    async def _follow(self) -> None:
        next_refresh = time.monotonic() + METADATA_REFRESH_S
        while True:
            try:
                if time.monotonic() >= next_refresh:
                    await self._assign_new(timeout=120.0)
                    next_refresh = time.monotonic() + METADATA_REFRESH_S
                if not self._assigned:
                    await asyncio.sleep(METADATA_REFRESH_S)
                    continue
                batch = await self._consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batch.values():
                    for rec in records:
                        self._record(rec)
                self.last_error = ""
                async with self._progress:
                    self._progress.notify_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep following: Kafka outages are transient
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "table read failed", extra={"topic": self.topic, "error": self.last_error}
                )
                await asyncio.sleep(1.0)
