"""The splitter: ``ofa_assets`` -> ``asset_stream_<group>``, exactly once.

Consume-transform-produce in Kafka transactions. Each input record goes, byte for byte, to the
derived topic of its asset's group (key = asset uuid, the source record's timestamp, original
headers plus the source coordinates, the source's timestamp type and the group); a record
that breaks the contract goes to the dead-letter topic instead. Derived records, changelog
updates, group announcements, dead letters and the input offsets of one cycle are committed in
one transaction per input partition, so a crash at any point leaves every input record in
exactly one output, exactly once, for read_committed readers.

Transactional ids and fencing
-----------------------------
aiokafka has no KIP-447 (``sendOffsetsToTransaction`` with consumer group metadata), so the
broker cannot fence a zombie by consumer generation. We use the classic scheme of Kafka Streams'
"exactly_once" (v1) mode instead: **one transactional producer per owned input partition**, with
``transactional.id = <SPLIT_TRANSACTIONAL_ID_PREFIX>-<input topic>-<partition>``. Whoever takes a
partition first initialises that producer (InitProducerId), which bumps the epoch, aborts or
completes the previous owner's open transaction and fences the previous owner for good; only then
does it read the committed offset and the partition's changelog. Several instances can therefore
share the input partitions through an ordinary consumer group: a partition's output is written by
exactly one live producer epoch at any time. A fenced instance (ProducerFenced) stops with an
error and is expected to be restarted; it never writes again with the old epoch.

State
-----
The asset -> group table is partitioned like the input: the changelog topic has (at least) as
many partitions as the input, and the entry of an asset read from input partition ``p`` is written
to changelog partition ``p`` (explicitly, not by hashing). On assignment of ``p`` the instance
reads changelog partition ``p`` from the beginning to its last stable offset (read_committed)
before it processes any record of ``p``.

Groups
------
A group's derived topic is created on first use (partitions, replication, retention are
settings) before the transaction that writes to it, and the group is announced on the compacted
``ofa_groups`` topic (key = group name, value = GroupAnnouncement JSON) inside that transaction,
so bridges, edges and the router discover new groups without a redeploy.

Regrouping and order
--------------------
When an asset moves (a new ``workcenter`` record, or whatever the strategy reads), that record
and every later one go to the new group's topic; earlier records stay in the old group's topic.
Order per asset is preserved *within* each derived topic, but a reader of both topics may see the
first records of the new group before the last ones of the old group: there is no order across
topics. Records of an asset without a group go to ``SPLIT_DEFAULT_GROUP`` (``_ungrouped``), or are
dropped and counted when it is empty.

A strategy may read a global table (the default ``uns`` strategy reads OpenFactory's UNS map, see
:mod:`splitter.uns`): it is read to its end before the consumer group is joined and followed live
afterwards, by every instance, whatever partitions it owns. A change of the table applies to the
records processed after it was read. A crash replays the records of the uncommitted cycle: their
first outputs were aborted (invisible to read_committed readers), and the replay groups them by
the table as read at replay time, which is at least as new as before the crash. So an asset moved
by the table has its records in the old group up to some record and in the new one from there
on, each record once, never back.

Cadence
-------
A cycle starts as soon as the first records arrive and keeps taking what is already fetched until
nothing more is buffered, ``SPLIT_MAX_BATCH_RECORDS`` or ``SPLIT_MAX_COMMIT_INTERVAL_MS``; what was
measured and tried is in docs/decisions.md ("Splitter cadence").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from prometheus_client import CollectorRegistry

from ofa_contract import compat
from ofa_contract.compat import lower_txn_retry_backoff
from ofa_contract.events import BadRecord, decode_record
from ofa_contract.layout import KafkaHeaders as H
from ofa_contract.layout import Layout
from ofa_contract.runtime import get_logger
from ofa_contract.runtime.rebalance import GuardedRebalanceListener
from ofa_contract.settings import CommonSettings
from ofa_contract.topics import AssetGroup, GroupAnnouncement
from splitter.delivery import AtLeastOnce, changelog_mark, consumer_options
from splitter.global_table import GlobalTable
from splitter.grouping import FollowsTable, GroupingStrategy
from splitter.metrics import SplitterMetrics
from splitter.restore import apply_announcements, apply_changelog, read_to_end
from splitter.settings import SplitterSettings
from splitter.teardown import bounded, stop_consumer, stop_producer
from splitter.topic_admin import TopicAdmin, wait_for_leaders

log = get_logger("splitter", __name__)

#: Header naming the original size of a dead letter that had to be truncated to fit.
H_TRUNCATED = "ofa-truncated-from"

_enc = msgspec.json.Encoder()
#: H.SRC_TIMESTAMP_TYPE values, indexed by "is LogAppendTime".
_TS_TYPES = (b"0", b"1")


class SplitterError(RuntimeError):
    """The splitter cannot go on (fenced, misconfigured topics, failed restore...)."""


class SplitterConfigError(SplitterError):
    """A failure that a restart cannot heal (topics that do not fit the settings): the process
    exits instead of recovering (see :mod:`splitter.supervisor`)."""


class _Partition:
    """What the splitter holds for one owned input partition."""

    __slots__ = ("in_txn", "next_offset", "number", "producer", "table", "tracked")

    def __init__(
        self,
        number: int,
        producer: AIOKafkaProducer,
        table: dict[str, str],
        tracked: Iterable[str] = (),
    ) -> None:
        self.number = number
        self.producer = producer
        self.table = table
        self.in_txn = False
        self.next_offset = -1
        #: Topics whose metadata the producer's client tracks (see Splitter._track).
        self.tracked = set(tracked)


class _Cycle:
    """Bookkeeping of one transaction cycle (counted into metrics only once committed)."""

    __slots__ = ("count", "dlq", "dropped", "out", "regrouped", "sent", "touched")

    def __init__(self) -> None:
        self.touched: list[_Partition] = []
        self.count = 0
        self.out: dict[str, int] = {}
        self.dlq: dict[str, int] = {}
        self.dropped = 0
        self.regrouped = 0
        #: Delivery futures of every record sent in this cycle. aiokafka's commit_transaction
        #: only waits for them and commits even when some failed, so we check them ourselves.
        self.sent: list[asyncio.Future[Any]] = []


class Splitter:
    """One splitter instance: start(), run(stop), close()."""

    def __init__(
        self,
        common: CommonSettings,
        settings: SplitterSettings,
        strategy: GroupingStrategy,
        registry: CollectorRegistry,
        layout: Layout,
        metrics: SplitterMetrics | None = None,
    ) -> None:
        self.common = common
        self.settings = settings
        self.strategy = strategy
        self.layout = layout
        # A supervisor that rebuilds the splitter after a failure hands its metrics over.
        self.metrics = metrics or SplitterMetrics(registry)
        self.input_topic = layout.input_topic
        self._bootstrap = common.kafka_bootstrap_servers
        self._admin = TopicAdmin(self._bootstrap)
        self._consumer: AIOKafkaConsumer | None = None
        self._parts: dict[int, _Partition] = {}
        self._ready_parts: set[int] = set()
        self._groups: dict[str, GroupAnnouncement] = {}
        self._lock = asyncio.Lock()
        self._epoch = 0
        self._fatal: BaseException | None = None
        self._wake = asyncio.Event()
        self._started = False
        self._joined = False
        self._restoring: set[int] = set()
        self._probing: set[int] = set()
        self._changelog_partitions = 0
        self._rebalancing = False
        self._table: GlobalTable | None = None
        self._waiting = ""
        #: The at_least_once mode's state (None in exactly_once mode).
        self._alo = (
            AtLeastOnce(settings, self.metrics, layout.changelog_topic)
            if settings.delivery == "at_least_once"
            else None
        )

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Create internal topics, load group announcements and join the consumer group."""
        s = self.settings
        lay = self.layout
        await self._admin.start()
        n_input = await self._admin.partitions(self.input_topic)
        if n_input == 0:
            raise SplitterError(f"input topic {self.input_topic!r} does not exist")
        await self._admin.ensure(
            lay.changelog_topic, n_input, s.topic_replication, {"cleanup.policy": "compact"}
        )
        self._changelog_partitions = await self._admin.partitions(lay.changelog_topic)
        if self._changelog_partitions < n_input:
            raise SplitterConfigError(
                f"changelog topic {lay.changelog_topic!r} has {self._changelog_partitions} "
                f"partitions but the input {self.input_topic!r} has {n_input}; the changelog "
                "needs one partition per input partition (add partitions to it)"
            )
        await self._admin.ensure(
            lay.groups_topic, 1, s.topic_replication, {"cleanup.policy": "compact"}
        )
        await self._admin.ensure(
            lay.dlq_topic, 1, s.topic_replication, {"max.message.bytes": str(s.dlq_max_bytes)}
        )
        n_groups = await self._admin.partitions(lay.groups_topic)
        await read_to_end(
            self._bootstrap,
            [TopicPartition(lay.groups_topic, p) for p in range(n_groups)],
            apply_announcements(self._groups),
            timeout=s.restore_timeout_s,
        )
        log.info("known groups loaded", extra={"groups": sorted(self._groups)})
        await self._start_table()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=s.group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=max(s.max_record_bytes * 2, 1024 * 1024),
            fetch_max_bytes=max(s.max_record_bytes * 4, 50 * 1024 * 1024),
            max_poll_records=s.max_batch_records,
            **consumer_options(s),
            **s.group_options(),
        )
        await self._consumer.start()
        listener = GuardedRebalanceListener(self._on_assigned, self._on_revoked, self._failed)
        self._consumer.subscribe([self.input_topic], listener=listener)
        self._started = True

    async def _start_table(self) -> None:
        """Restore the strategy's global table (if it has one) before any input is processed."""
        strategy = self.strategy
        if not isinstance(strategy, FollowsTable):
            return
        self._table = GlobalTable(
            self._bootstrap,
            strategy.table_topic,
            strategy.apply_table_record,
            self._admin.partitions,
        )
        self.metrics.strategy_table.set_function(strategy.table_size)
        await self._table.start(self.settings.restore_timeout_s)

    async def close(self, timeout: float = 10.0) -> None:
        """Abort anything still open, leave the group, close every client; every step is
        bounded by ``timeout`` seconds (see :mod:`splitter.teardown`), so a dead or cut-off
        broker cannot hold the process."""
        # at_least_once: the final offset commit (bounded; on failure the next owner replays).
        await bounded(self._close_delivery(), timeout, "the final offset commit")
        parts = list(self._parts.values())
        self._parts.clear()
        self._ready_parts.clear()
        self._joined = False
        # Aborted in parallel: one bound for all, not one per partition.
        open_txn = [p for p in parts if p.in_txn]
        if open_txn:
            await bounded(
                asyncio.gather(*(p.producer.abort_transaction() for p in open_txn)),
                timeout,
                "abort of the open transactions",
            )
        for p in open_txn:
            p.in_txn = False
        if self._consumer is not None:
            await stop_consumer(self._consumer, timeout, "the input consumer")
        await asyncio.gather(
            *(
                stop_producer(p.producer, timeout, f"producer of partition {p.number}")
                for p in parts
            )
        )
        if self._table is not None:
            await bounded(self._table.stop(), timeout, "the global table follower")
        await bounded(self._admin.close(), timeout, "the admin client")

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set (the open cycle is committed first) or a fatal error."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        s = self.settings
        while not stop.is_set():
            if self._fatal is not None:
                raise SplitterError(f"splitter failed: {self._fatal!r}") from self._fatal
            batch = await consumer.getmany(
                timeout_ms=s.poll_timeout_ms, max_records=s.max_batch_records
            )
            # Read right as getmany returns (no suspension in between): the records were drained
            # at this epoch. Reading it before the call would be wrong: a getmany that waited
            # through a rebalance returns records fetched after the new seek, and those must
            # not be dropped.
            epoch = self._epoch
            if not batch:
                self._update_lag()
                continue
            async with self._lock:
                if epoch != self._epoch:
                    # A rebalance ran since these records were drained. They may have been
                    # drained after the assignment's seek (while _on_assigned still awaited),
                    # so the position can already be past them: rewind to what we processed.
                    await self._rewind(consumer, batch)
                    continue
                await self._cycle(consumer, batch)
        if self._fatal is not None:
            raise SplitterError(f"splitter failed: {self._fatal!r}") from self._fatal

    async def _rewind(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """Seek the partitions of a dropped batch that we own back to our processed offset
        (the committed one: a cycle always ends committed or stops the process)."""
        for tp in batch:
            part = self._parts.get(tp.partition)
            if (
                tp.topic != self.input_topic
                or part is None
                or tp.partition not in self._ready_parts
            ):
                continue  # not ours (any more): the next assignment seeks it
            if part.next_offset < 0:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, part.next_offset)

    # ---------------------------------------------------------------- the cycle

    async def _cycle(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        if self._alo is not None:
            await self._alo_cycle(batch)
            return
        s = self.settings
        cycle = _Cycle()
        started = time.monotonic()
        budget = s.max_commit_interval_ms / 1000
        try:
            await self._process(batch, cycle)
            while cycle.count < s.max_batch_records and time.monotonic() - started < budget:
                more = await self._more(consumer, s.max_batch_records - cycle.count)
                if not more:
                    break
                await self._process(more, cycle)
            await self._commit(cycle)
        except BaseException as exc:
            await self._abort(cycle)
            if isinstance(exc, ProducerFenced):
                raise SplitterError(
                    "fenced: another splitter instance took over an input partition of this "
                    "one (its transactional id); restart to rejoin"
                ) from exc
            raise
        self._update_lag()

    async def _more(
        self, consumer: AIOKafkaConsumer, limit: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Records already fetched, without waiting.

        During a rebalance aiokafka's getmany waits for the new assignment, which waits for our
        revoke callback, which waits for this cycle: so never wait here. A getmany cancelled
        while it waits has consumed nothing (records are drained synchronously).
        """
        if self._rebalancing:
            return {}
        try:
            got: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await asyncio.wait_for(
                consumer.getmany(timeout_ms=0, max_records=limit), 0.05
            )
        except TimeoutError:
            return {}
        return got

    async def _process(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        cycle: _Cycle,
    ) -> None:
        s = self.settings
        lay = self.layout
        default = s.fallback_group()
        in_topic = self.input_topic
        for tp, records in batch.items():
            part = self._parts.get(tp.partition)
            if part is None or tp.partition not in self._ready_parts or tp.topic != in_topic:
                # Not (yet) ours: its position is reset by the assignment's seek.
                continue
            if not part.in_txn:
                if self._alo is None:
                    await part.producer.begin_transaction()
                part.in_txn = True
                cycle.touched.append(part)
            producer = part.producer
            src_topic = in_topic.encode()
            src_part = str(tp.partition).encode()
            self.metrics.records_in.labels(str(tp.partition)).inc(len(records))
            for rec in records:
                cycle.count += 1
                part.next_offset = rec.offset + 1
                try:
                    event = decode_record(
                        rec.key, rec.value, rec.headers, max_bytes=s.max_record_bytes
                    )
                except BadRecord as exc:
                    await self._dead_letter(part, rec, exc.kind, exc.detail, cycle)
                    continue
                current = part.table.get(event.asset_uuid)
                group = self.strategy.group_for(event, current)
                if group is not None and group != current:
                    try:
                        self.layout.group_topic(group)
                    except ValueError as exc:
                        await self._dead_letter(part, rec, "bad_group", str(exc), cycle)
                        continue
                    part.table[event.asset_uuid] = group
                    cycle.sent.append(
                        await producer.send(
                            lay.changelog_topic,
                            _enc.encode(
                                AssetGroup(group=group, updated_ms=int(time.time() * 1000))
                            ),
                            key=rec.key,
                            partition=tp.partition,
                        )
                    )
                    cycle.regrouped += 1
                    log.info(
                        "asset grouped",
                        extra={"asset": event.asset_uuid, "group": group, "previous": current},
                    )
                if group is None:
                    group = default
                if not group:
                    cycle.dropped += 1
                    continue
                topic = await self._ensure_group(group, part, cycle)
                headers = list(rec.headers)
                headers.append((H.SRC_TOPIC, src_topic))
                headers.append((H.SRC_PARTITION, src_part))
                headers.append((H.SRC_OFFSET, str(rec.offset).encode()))
                headers.append((H.GROUP, group.encode()))
                headers.append((H.SRC_TIMESTAMP_TYPE, _TS_TYPES[rec.timestamp_type == 1]))
                # The source record's time, not ours: the bridge reports it as OpenFactory's
                # forwarder reports the ofa_assets record's (``attributes.kafka_timestamp``).
                cycle.sent.append(
                    await producer.send(
                        topic,
                        rec.value,
                        key=rec.key,
                        headers=headers,
                        timestamp_ms=rec.timestamp if rec.timestamp >= 0 else None,
                    )
                )
                cycle.out[group] = cycle.out.get(group, 0) + 1

    async def _dead_letter(
        self,
        part: _Partition,
        rec: ConsumerRecord[bytes, bytes],
        kind: str,
        detail: str,
        cycle: _Cycle,
    ) -> None:
        s = self.settings
        lay = self.layout
        headers = list(rec.headers)
        headers += [
            (H.ERROR_KIND, kind.encode()),
            (H.ERROR, detail.encode("utf-8", "replace")[:2000]),
            (H.SRC_TOPIC, self.input_topic.encode()),
            (H.SRC_PARTITION, str(rec.partition).encode()),
            (H.SRC_OFFSET, str(rec.offset).encode()),
        ]
        value = rec.value
        room = s.dlq_max_bytes - 64 * 1024
        if value is not None and len(value) > room:
            # Only possible when the input allows larger records than the dead-letter topic;
            # keep the head and say how large it was rather than lose the whole record.
            headers.append((H_TRUNCATED, str(len(value)).encode()))
            value = value[:room]
        if value is None and rec.key is None:
            value = b""
        cycle.sent.append(
            await part.producer.send(lay.dlq_topic, value, key=rec.key, headers=headers)
        )
        cycle.dlq[kind] = cycle.dlq.get(kind, 0) + 1
        log.warning(
            "bad record sent to the dead-letter topic",
            extra={
                "kind": kind,
                "detail": detail[:500],
                "topic": self.input_topic,
                "partition": rec.partition,
                "offset": rec.offset,
            },
        )

    async def _ensure_group(self, group: str, part: _Partition, cycle: _Cycle) -> str:
        s = self.settings
        lay = self.layout
        ann = self._groups.get(group)
        if ann is not None:
            if ann.topic not in part.tracked:
                await self._track(part, ann.topic)
            return ann.topic
        topic = self.layout.group_topic(group)
        # Created before the transaction writes to it: a produce to a missing topic would
        # stall the transaction until the metadata timeout.
        await self._admin.ensure(
            topic,
            s.topic_partitions,
            s.topic_replication,
            # CreateTime explicitly: a broker defaulting to LogAppendTime would overwrite the
            # source timestamps the derived records carry.
            {"retention.ms": str(s.topic_retention_ms), "message.timestamp.type": "CreateTime"},
        )
        await self._track(part, topic)
        ann = GroupAnnouncement(
            group=group,
            topic=topic,
            partitions=await self._admin.partitions(topic),
            created_ms=int(time.time() * 1000),
        )
        cycle.sent.append(
            await part.producer.send(lay.groups_topic, _enc.encode(ann), key=group.encode())
        )
        self._groups[group] = ann
        self.metrics.groups_created.inc()
        log.info("group announced", extra={"group": group, "topic": topic})
        return topic

    async def _commit(self, cycle: _Cycle) -> None:
        if not cycle.touched:
            return
        group_id = self.settings.group_id
        started = time.monotonic()
        # A record whose delivery failed must not be committed past: raising here aborts the
        # cycle (see _cycle), so its input offset is not committed and it is processed again.
        results = await asyncio.gather(*cycle.sent, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise SplitterError(
                f"{len(failed)} of {len(results)} records of this transaction were not "
                f"delivered (first error: {failed[0]!r}); aborting it"
            )

        async def commit_one(part: _Partition) -> None:
            tp = TopicPartition(self.input_topic, part.number)
            await part.producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(part.next_offset, "")}, group_id
            )
            await part.producer.commit_transaction()
            part.in_txn = False

        await asyncio.gather(*(commit_one(p) for p in cycle.touched))
        m = self.metrics
        m.commit_latency.observe(time.monotonic() - started)
        m.transactions.labels("commit").inc(len(cycle.touched))
        self._count(cycle)

    def _count(self, cycle: _Cycle) -> None:
        """Count a committed (exactly_once) or sent (at_least_once) cycle into the metrics."""
        m = self.metrics
        m.cycle_records.observe(cycle.count)
        for group, n in cycle.out.items():
            m.records_out.labels(group).inc(n)
        for kind, n in cycle.dlq.items():
            m.dlq.labels(kind).inc(n)
        if cycle.dropped:
            m.dropped.inc(cycle.dropped)
        if cycle.regrouped:
            m.regrouped.inc(cycle.regrouped)
            m.table_size.set(sum(len(p.table) for p in self._parts.values()))

    # ---------------------------------------------------------------- at_least_once

    async def _alo_cycle(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Send a batch as it arrived (no transaction, no waiting for more); the periodic
        commit (:meth:`_alo_commit`) commits the offsets once the sends are acknowledged."""
        alo = self._alo
        assert alo is not None
        cycle = _Cycle()
        try:
            await self._process(batch, cycle)
        except BaseException:
            # Positions may be past records that were not sent: commit nothing more.
            alo.broken = True
            self._ready_parts.clear()
            raise
        for part in cycle.touched:
            part.in_txn = False
        alo.sent(cycle.sent)
        self._count(cycle)
        alo.start(self._alo_tick, self._alo_failed)
        self._update_lag()

    async def _alo_tick(self) -> None:
        async with self._lock:
            await self._alo_commit()

    def _alo_failed(self, exc: Exception) -> None:
        log.error("at_least_once commit failed", extra={"error": repr(exc)})
        self._fatal = exc

    async def _alo_commit(self) -> None:
        """Commit the processed position of every owned partition (call with the lock)."""
        alo = self._alo
        consumer = self._consumer
        if alo is None or consumer is None:
            return
        offsets = {
            TopicPartition(self.input_topic, n): self._parts[n].next_offset
            for n in self._ready_parts
            if n in self._parts
        }
        await alo.commit(consumer, offsets)

    async def _alo_restore_marks(
        self, consumer: AIOKafkaConsumer, new: list[int]
    ) -> dict[TopicPartition, int]:
        """at_least_once: where to stop reading each new partition's changelog (the mark its
        committed offset carries), remembered for the next commits."""
        alo = self._alo
        if alo is None or not new:
            return {}
        tps = [TopicPartition(self.input_topic, n) for n in new]
        saved = await compat.kafka_committed_metadata(consumer, tps)
        log_tps = [TopicPartition(self.layout.changelog_topic, n) for n in new]
        ends = await consumer.end_offsets(log_tps)
        until: dict[TopicPartition, int] = {}
        for tp, log_tp in zip(tps, log_tps, strict=True):
            # Never committed: whatever the changelog holds was written for records that will
            # be replayed from the beginning. Committed without a mark (exactly_once): the
            # changelog is exactly the committed state.
            mark = changelog_mark(saved[tp]) if tp in saved else 0
            until[log_tp] = ends[log_tp] if mark is None else min(mark, ends[log_tp])
            alo.restored(tp.partition, until[log_tp])
        return until

    async def _close_delivery(self) -> None:
        """at_least_once: stop the periodic commit and, unless something failed, commit what
        was sent (a graceful stop leaves no copies behind)."""
        alo = self._alo
        if alo is None:
            return
        await alo.stop()
        if self._fatal is None and not alo.broken and self._ready_parts:
            try:
                async with self._lock:
                    await self._alo_commit()
            except Exception as exc:  # the next owner replays; the bridge drops the copies
                log.warning("final offset commit failed", extra={"error": repr(exc)})
        await alo.stop_producer()
        alo.reset()

    async def _abort(self, cycle: _Cycle) -> None:
        for part in cycle.touched:
            if not part.in_txn:
                continue
            try:
                await asyncio.wait_for(part.producer.abort_transaction(), 10)
                self.metrics.transactions.labels("abort").inc()
            except Exception as exc:  # fenced or broken: the next owner aborts it for us
                log.warning(
                    "could not abort transaction",
                    extra={"partition": part.number, "error": repr(exc)},
                )
            part.in_txn = False
        # No recovery in place: the in-memory tables may hold groups of aborted records, so
        # the caller stops and a restart rebuilds them from the committed changelog.
        self._ready_parts.clear()

    def _update_lag(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for number in self._ready_parts:
            part = self._parts[number]
            tp = TopicPartition(self.input_topic, number)
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is None or part.next_offset < 0:
                continue
            self.metrics.lag.labels(str(number)).set(max(end - part.next_offset, 0))

    # ---------------------------------------------------------------- rebalancing

    def _failed(self, exc: BaseException, phase: str) -> None:
        # aiokafka logs and swallows listener exceptions; a failed assignment must stop us.
        log.error("rebalance handling failed", extra={"phase": phase, "error": repr(exc)})
        self._fatal = exc

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._rebalancing = True
        async with self._lock:
            # The lock waits for a running cycle to commit: nothing is left open here.
            if self._alo is not None:
                # Sent records' offsets are committed before the partitions move on.
                await self._alo_commit()
                self._alo.forget([tp.partition for tp in revoked])
            self._epoch += 1
            self._ready_parts.clear()
            for tp in revoked:
                with contextlib.suppress(KeyError):
                    self.metrics.lag.remove(str(tp.partition))
            log.info(
                "partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)}
            )

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            self._epoch += 1
            mine = {tp.partition for tp in assigned if tp.topic == self.input_topic}
            for number in list(self._parts):
                if number not in mine:
                    part = self._parts.pop(number)
                    if self._alo is not None:
                        continue  # the producer is shared (stopped on close)
                    with contextlib.suppress(Exception):
                        await part.producer.stop()
            bad = [n for n in mine if n >= self._changelog_partitions]
            if bad:
                raise SplitterConfigError(
                    f"input partitions {bad} have no changelog partition in "
                    f"{self.layout.changelog_topic!r}; add partitions to the changelog"
                )
            new = sorted(mine - set(self._parts))
            self._restoring = set(new)
            started = time.monotonic()
            tables = await self._start_partitions(consumer, new)
            if new:
                self.metrics.restore_seconds.observe(time.monotonic() - started)
            for n in sorted(mine):
                tp = TopicPartition(self.input_topic, n)
                # A partition we keep: our own position is what we last committed (a cycle
                # ends committed or stops us). The group coordinator may not return it yet:
                # without KIP-447's stable offset fetch it answers the previous offset until
                # the commit's markers are written, which replayed committed records as
                # duplicates after the rebalance that often follows start-up.
                kept = self._parts[n].next_offset if n not in new else -1
                committed = kept if kept >= 0 else await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                    self._parts[n].next_offset = -1
                else:
                    consumer.seek(tp, committed)
                    self._parts[n].next_offset = committed
            self._restoring = set()
            await self._probe(consumer, [self._parts[n] for n in new])
            self._ready_parts = set(mine)
            self._rebalancing = False
            # Records drained before the seeks above carry an older epoch and are dropped.
            self._epoch += 1
            self._joined = True
            self.metrics.assigned.set(len(mine))
            self.metrics.table_size.set(sum(len(p.table) for p in self._parts.values()))
            log.info(
                "partitions assigned",
                extra={
                    "partitions": sorted(mine),
                    "restored": new,
                    "assets": {n: len(t) for n, t in tables.items()},
                },
            )

    async def _start_partitions(
        self, consumer: AIOKafkaConsumer, new: list[int]
    ) -> dict[int, dict[str, str]]:
        """Give each new partition its producer and its table restored from the changelog;
        on failure the producers made so far are closed (they are in no ``_parts`` yet)."""
        made = await asyncio.gather(*(self._new_producer(n) for n in new), return_exceptions=True)
        producers = [p for p in made if not isinstance(p, BaseException)]
        try:
            for outcome in made:
                if isinstance(outcome, BaseException):
                    raise outcome
            if new and self._table is not None:
                # The previous owner may have grouped by a newer table than we have read yet.
                await self._table.sync(self.settings.restore_timeout_s)
            # The producers' InitProducerId has fenced the previous owners and completed their
            # open transactions, so the changelog and the committed offsets are now final.
            tables: dict[int, dict[str, str]] = {n: {} for n in new}
            until = await self._alo_restore_marks(consumer, new)
            for n in new:
                await read_to_end(
                    self._bootstrap,
                    [TopicPartition(self.layout.changelog_topic, n)],
                    apply_changelog(tables[n]),
                    timeout=self.settings.restore_timeout_s,
                    until=until,
                )
        except BaseException:
            if self._alo is None:  # at_least_once shares one producer, stopped on close
                await asyncio.gather(
                    *(
                        stop_producer(p, 10, "producer of a partition being assigned")
                        for p in producers
                    )
                )
            raise
        for n, producer in zip(new, producers, strict=True):
            self._parts[n] = _Partition(n, producer, tables[n], self._internal_topics())
        return tables

    async def _probe(self, consumer: AIOKafkaConsumer, parts: list[_Partition]) -> None:
        """Commit one transaction per new partition that only re-commits its position, so that
        /ready stays false until a transaction can commit (the transaction and group
        coordinators of a fresh cluster load their logs first) and a failure shows at once."""
        if self._alo is not None:
            return  # no transactions to check (an offset commit here would stall the join)
        self._probing = {p.number for p in parts}

        async def probe(part: _Partition) -> None:
            tp = TopicPartition(self.input_topic, part.number)
            offset = part.next_offset
            if offset < 0:  # nothing committed: the position is the beginning
                offset = (await consumer.beginning_offsets([tp]))[tp]
            await part.producer.begin_transaction()
            part.in_txn = True
            await part.producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(offset, "")}, self.settings.group_id
            )
            await part.producer.commit_transaction()
            part.in_txn = False
            self._probing.discard(part.number)

        timeout = self.settings.transaction_timeout_ms / 1000
        try:
            await asyncio.wait_for(asyncio.gather(*(probe(p) for p in parts)), timeout)
        except TimeoutError:
            raise SplitterError(
                f"the start-up transactions of partitions {sorted(self._probing)} did not "
                f"commit within {timeout:.0f}s"
            ) from None

    async def _new_producer(self, number: int) -> AIOKafkaProducer:
        if self._alo is not None:
            return await self._alo.new_producer(self._bootstrap, self._internal_topics())
        s = self.settings
        # aiokafka waits a hard-coded 20 ms before retrying the AddPartitionsToTxn that starts a
        # transaction after CONCURRENT_TRANSACTIONS, which the broker answers until it has
        # written the previous commit's markers (about 1 ms): at low load that wait was most of
        # our added latency. A short retry is cheap here (it only happens right after a commit).
        lower_txn_retry_backoff(s.txn_start_retry_ms / 1000)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            transactional_id=f"{s.transactional_id_prefix}-{self.input_topic}-{number}",
            transaction_timeout_ms=s.transaction_timeout_ms,
            max_request_size=s.dlq_max_bytes,
            max_batch_size=256 * 1024,
            linger_ms=0,
            retry_backoff_ms=s.txn_retry_backoff_ms,
            request_timeout_ms=s.client_request_timeout_ms,
        )
        # aiokafka fetches the metadata of *every* topic while the client tracks none, and
        # send() then skips tracking a topic it already sees; once another topic is tracked,
        # each refresh asks for the tracked ones only and the untracked topic drops out of the
        # client's metadata. A NotLeaderForPartition retry (routine on a topic just created)
        # forces such a refresh, and the batch then waits for a leader the client never
        # learns of until request_timeout_ms expires it, past the transaction timeout
        # (issue 13, the start-up stall). So every topic we write to is tracked explicitly.
        # Set before start(), so that not even the first refresh fetches every topic.
        producer.client.set_topics(self._internal_topics())
        await producer.start()
        return producer

    def _internal_topics(self) -> list[str]:
        lay = self.layout
        return [lay.changelog_topic, lay.groups_topic, lay.dlq_topic]

    async def _track(self, part: _Partition, topic: str) -> None:
        """Make the partition's producer track ``topic`` and wait (bounded, logged) until its
        metadata names a leader for every partition of it, before the first send to it."""
        client = part.producer.client
        await client.add_topic(topic)
        # Bounded by half the transaction timeout: this runs inside the open transaction.
        await wait_for_leaders(client, topic, self.settings.transaction_timeout_ms / 2000)
        part.tracked.add(topic)

    # ---------------------------------------------------------------- ops

    def note_waiting(self, reason: str) -> None:
        """Say on /ready what start-up waits for (e.g. an unreachable Kafka)."""
        self._waiting = reason

    async def ready_issues(self) -> dict[str, str]:
        """What keeps this instance from being ready (empty dict = ready)."""
        issues: dict[str, str] = {}
        if self._fatal is not None:
            issues["splitter"] = f"failed: {self._fatal!r}"
        if not self._started:
            issues["splitter"] = self._waiting or "starting"
            return issues
        elif not self._joined:
            issues["consumer_group"] = f"joining consumer group {self.settings.group_id!r}"
        if self._restoring:
            issues["restore"] = f"restoring partitions {sorted(self._restoring)}"
        if self._table is not None:
            issues.update(self._table.issues())
        if self._probing:
            issues["transactions"] = (
                f"first transaction of partitions {sorted(self._probing)} not committed yet"
            )
        try:
            await asyncio.wait_for(self._admin.ping(self.input_topic), 3)
        except Exception as exc:
            issues["kafka"] = f"{self._bootstrap} does not answer: {exc!r}"
        return issues
