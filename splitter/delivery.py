"""The splitter's ``at_least_once`` delivery mode (``SPLIT_DELIVERY=at_least_once``).

Records are sent as they arrive by idempotent producers (no transactional id, no transaction
cycle), and the input offsets of delivered records are committed to the consumer group
periodically (``SPLIT_OFFSET_COMMIT_INTERVAL_MS``), after every send up to them was
acknowledged; a rebalance and a graceful stop commit first. A crash therefore replays what was
sent since the last commit: derived-topic readers see those records twice (at new offsets);
the bridge recognises the copies by their source coordinates (:mod:`bridge.dedupe`), so SSE and
NATS clients still see each event once.

Changelog and group announcements are written the same way, before the derived records they
concern (same producer, in order). The changelog may then run ahead of the committed input
offset: a crash after an asset's move was written but before the offset of the record that
moved it was committed would make the replay route that asset's earlier records to the new
group's topic, a copy in another topic that no per-partition de-duplication can recognise. So
each offset commit carries, as its metadata, the changelog offset that matches it (one past the
last changelog record written for the input records below it), and a new owner restores the
table only up to there; the replay then rewrites the moves after it, deciding as the first
attempt did. (A strategy reading a global table, like ``uns``, decides by the table as read at
replay time: a table change between a record's first write and its replay can still put the
copy in another group's topic.) Without transactions there is no fencing: a splitter
that lost its partitions without noticing (session expired during a long stall) may still write
the records it had fetched; the copies are de-duplicated downstream like a replay's.

Pure bookkeeping here; the engine owns the consumer, the partitions and the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import RecordMetadata

from ofa_contract.runtime import get_logger
from splitter.metrics import SplitterMetrics
from splitter.settings import SplitterSettings

log = get_logger("splitter", __name__)

#: Commit metadata: ``ofa-cl1;<changelog offset>``.
_MAGIC = "ofa-cl1;"


def changelog_mark(metadata: str | None) -> int | None:
    """The changelog offset an at_least_once commit carries, or None (an exactly_once
    commit, whose changelog is exactly the committed one: read it to its end)."""
    if not metadata or not metadata.startswith(_MAGIC):
        return None
    try:
        mark = int(metadata[len(_MAGIC) :])
    except ValueError:
        return None
    return mark if mark >= 0 else None


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def cached_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner (murmur2 of the key, as Kafka's Java client), with the
    hash of each key cached: the pure-Python murmur2 was a sixth of the producer's CPU per
    record, and the keys (asset uuids) repeat endlessly."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


def consumer_options(settings: SplitterSettings) -> dict[str, int]:
    """Input consumer options of the mode: at_least_once lets the broker gather records for
    up to ``fetch_batch_ms`` per fetch (each fetch, and the sends it leads to, costs CPU per
    request, not per record); exactly_once keeps aiokafka's defaults (its cycle batches)."""
    if settings.delivery != "at_least_once" or settings.fetch_batch_ms == 0:
        return {}
    return {"fetch_max_wait_ms": settings.fetch_batch_ms, "fetch_min_bytes": 1024 * 1024}


class DeliveryFailed(RuntimeError):
    """A record sent in at_least_once mode was not delivered: its offset must not be committed."""


class AtLeastOnce:
    """Pending sends and committed offsets of one splitter instance in at_least_once mode."""

    def __init__(
        self, settings: SplitterSettings, metrics: SplitterMetrics, changelog_topic: str
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.changelog_topic = changelog_topic
        #: Per input partition: one past the last changelog record written for the records
        #: processed so far (committed with their offsets, see changelog_mark).
        self._changelog_end: dict[int, int] = {}
        #: Delivery futures of records sent since the last commit.
        self._pending: list[asyncio.Future[Any]] = []
        #: Offset last committed per input partition (skips commits that change nothing).
        self._committed: dict[int, int] = {}
        self._ticker: asyncio.Task[None] | None = None
        #: One producer for every owned partition: fewer, fuller produce requests.
        self._producer: AIOKafkaProducer | None = None
        #: The engine starts the producers of new partitions concurrently: start one only.
        self._producer_lock = asyncio.Lock()
        #: Set when processing failed half-way: positions may be past unsent records, so
        #: nothing may be committed any more (the process stops; a restart replays).
        self.broken = False

    async def new_producer(self, bootstrap: str, topics: list[str]) -> AIOKafkaProducer:
        """The idempotent producer (in order, no duplicates from its own retries) shared by
        every partition; started on first use, stopped by :meth:`stop`."""
        async with self._producer_lock:
            if self._producer is None:
                self._producer = await self._start_producer(bootstrap, topics)
            return self._producer

    async def _start_producer(self, bootstrap: str, topics: list[str]) -> AIOKafkaProducer:
        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            max_request_size=s.dlq_max_bytes,
            max_batch_size=256 * 1024,
            linger_ms=0,
            partitioner=cached_partitioner,
            request_timeout_ms=s.client_request_timeout_ms,
        )
        # Same reason as the transactional producers (see Splitter._new_producer).
        producer.client.set_topics(topics)
        await producer.start()
        return producer

    def restored(self, partition: int, changelog_end: int) -> None:
        """A newly owned partition's table was restored up to ``changelog_end``."""
        self._changelog_end[partition] = changelog_end

    def offsets(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
        """``(offset, metadata)`` for a commit of these input offsets."""
        return {
            tp: (off, f"{_MAGIC}{self._changelog_end[tp.partition]}")
            if tp.partition in self._changelog_end
            else off
            for tp, off in offsets.items()
        }

    def sent(self, futures: list[asyncio.Future[Any]]) -> None:
        """Remember the delivery futures of a processed batch until the next commit."""
        self._pending.extend(futures)

    def start(
        self, tick: Callable[[], Awaitable[None]], failed: Callable[[Exception], None]
    ) -> None:
        """Start the periodic commit (once): ``tick`` commits, ``failed`` is told of an error
        that must stop the splitter."""
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(tick, failed), name="splitter-commit")

    async def _tick(
        self, tick: Callable[[], Awaitable[None]], failed: Callable[[Exception], None]
    ) -> None:
        interval = self.settings.offset_commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await tick()
            except Exception as exc:
                self.broken = True
                failed(exc)
                return

    async def commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Wait for every pending send, then commit ``offsets`` (next offset to process, per
        input partition) that changed. Raises DeliveryFailed when a send failed."""
        if self.broken:
            return
        pending, self._pending = self._pending, []
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                self.broken = True
                raise DeliveryFailed(
                    f"{len(failed)} of {len(results)} records were not delivered (first error: "
                    f"{failed[0]!r}); their input offsets stay uncommitted"
                ) from failed[0]
            self._note_changelog(results)
        due = {
            tp: off
            for tp, off in offsets.items()
            if off >= 0 and self._committed.get(tp.partition) != off
        }
        if not due:
            return
        started = time.monotonic()
        try:
            await asyncio.wait_for(
                consumer.commit(self.offsets(due)), self.settings.transaction_timeout_ms / 1000
            )
        except (CommitFailedError, IllegalStateError, TimeoutError) as exc:
            # The group moved on (or the coordinator is away): the next owner replays from the
            # previous commit, and the bridge drops the copies. Not a reason to stop.
            log.warning("input offset commit failed; retried next time: %r", exc)
            return
        self.metrics.commit_latency.observe(time.monotonic() - started)
        for tp, off in due.items():
            self._committed[tp.partition] = off

    def _note_changelog(self, results: list[Any]) -> None:
        for md in results:
            if isinstance(md, RecordMetadata) and md.topic == self.changelog_topic:
                end = self._changelog_end.get(md.partition, 0)
                self._changelog_end[md.partition] = max(end, md.offset + 1)

    def forget(self, partitions: list[int]) -> None:
        """Partitions no longer owned: their next owner commits them."""
        for p in partitions:
            self._committed.pop(p, None)
            self._changelog_end.pop(p, None)

    async def stop(self) -> None:
        """Stop the periodic commit."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def stop_producer(self) -> None:
        """Flush and stop the shared producer (after the last commit)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    def reset(self) -> None:
        """Forget everything (after close(): a new start() begins from the committed state)."""
        self._pending = []
        self._committed = {}
        self._changelog_end = {}
        self.broken = False
