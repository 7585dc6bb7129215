"""One bridge worker: owned group topics from Kafka into JetStream, exactly once, in order.

Flow: one consumer (in the pool's single consumer group, pattern subscription, the
group-singleton assignor, read_committed) feeds a FIFO backlog; records go to the pipelined
:class:`~bridge.publisher.Publisher` while its window has room, otherwise the assigned partitions
are paused (backpressure) and polling continues so the group membership stays alive. Offsets
are committed per partition up to the lowest un-acked record only. On a rebalance the revoked
partitions stop publishing, their in-flight records are drained and committed, and only then
are they released.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from nats.js import JetStreamContext

from bridge.assignor import GroupSingletonAssignor
from bridge.dedupe import SourceDedupe, decode_map, source_of
from bridge.gap_watch import GapWatch
from bridge.metrics import BridgeMetrics
from bridge.publisher import Publisher, encode_headers
from bridge.registry import Registry
from bridge.settings import BridgeSettings
from bridge.stream_setup import ensure_streams
from bridge.tracker import Entry, PartitionTracker
from ofa_contract import compat, openfactory
from ofa_contract.events import BadRecord, decode_record
from ofa_contract.layout import KafkaHeaders, Layout, NatsHeaders
from ofa_contract.runtime import BackgroundTasks, Backoff, get_logger, wait_for_service
from ofa_contract.runtime.rebalance import GuardedRebalanceListener
from ofa_contract.settings import CommonSettings

log = get_logger("bridge", __name__)

_HEADER_KEY_BAD = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
#: Source coordinates under the names NATS readers (and the gap watcher) look for.
_SRC_HEADERS = {
    KafkaHeaders.SRC_TOPIC: NatsHeaders.SRC_TOPIC,
    KafkaHeaders.SRC_PARTITION: NatsHeaders.SRC_PARTITION,
    KafkaHeaders.SRC_OFFSET: NatsHeaders.SRC_OFFSET,
}


def _header_value(raw: bytes | None) -> str:
    # NATS header values are single-line text; Kafka header values are arbitrary bytes.
    if not raw:
        return ""
    return raw.decode("utf-8", "backslashreplace").replace("\r", " ").replace("\n", " ").strip()


class BridgeWorker:
    """A bridge worker; :meth:`run` until ``stop`` is set, then drain, commit and close."""

    def __init__(
        self,
        common: CommonSettings,
        layout: Layout,
        settings: BridgeSettings,
        metrics: BridgeMetrics,
    ) -> None:
        self.common = common
        self.layout = layout
        self.settings = settings
        self.metrics = metrics
        self.trackers: dict[TopicPartition, PartitionTracker] = {}
        self._backlog: deque[tuple[PartitionTracker, Any]] = deque()
        self._paused = False
        self._started = False
        self._kafka_issue = "consumer not started"
        #: Set when a rebalance callback failed: the worker stops (exit status 1).
        self.failed: str | None = None
        self._stop = asyncio.Event()
        self.assignor = GroupSingletonAssignor()
        self.consumer = self._new_consumer()
        self.publisher = Publisher(
            common.nats_url,
            window=settings.max_in_flight,
            max_held=settings.max_held,
            ack_timeout=settings.ack_timeout_s,
            backoff=Backoff(first=settings.retry_backoff_s, cap=settings.retry_backoff_max_s),
            metrics=metrics,
            on_ack=self._on_ack,
            unacked=self._unacked,
            on_connect=self._on_nats_connect,
            name=f"ofa-bridge-{settings.worker_id}",
        )
        self.registry = Registry(common.nats_url, layout, settings, metrics, self.owned_groups)
        self._ack_event = asyncio.Event()
        self._subjects: dict[tuple[str, str], str] = {}
        self._counters: dict[str, tuple[Any, Any]] = {}
        # OpenFactory-layout subjects must never fall into the serving layer's own subjects.
        self._reserved_subjects = (layout.stream_subject_prefix, layout.live_subject_prefix)
        self._skip_reasons_logged: set[str] = set()
        self._dedupe_truncation_logged = False
        self.gap_watch = GapWatch(
            common, layout, settings, metrics, self._owned, self._entry, self._kafka_committed
        )

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=self.common.kafka_bootstrap_servers,
            group_id=s.consumer_group,
            client_id=f"ofa-bridge-{s.worker_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            metadata_max_age_ms=s.metadata_refresh_ms,
            **s.group_options(),
            max_poll_records=s.max_poll_records,
            partition_assignment_strategy=(self.assignor,),
        )

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and bridge until ``stop`` is set; then drain in-flight, commit, close.

        While Kafka is unreachable it waits with back-off (not ready, one log line naming
        ``KAFKA_BOOTSTRAP_SERVERS``); NATS is awaited by the publisher the same way.
        """
        self._stop = stop
        self.publisher.start()
        tasks = BackgroundTasks("bridge", log)
        try:
            started = await wait_for_service(
                f"Kafka at {self.common.kafka_bootstrap_servers}",
                "KAFKA_BOOTSTRAP_SERVERS",
                self._start_consumer,
                stop,
                log,
                on_waiting=self._waiting_for_kafka,
            )
            if started is None:
                return  # stopped while waiting
            pattern = self.layout.group_topic_pattern()
            self.consumer.subscribe(
                pattern=pattern,
                listener=GuardedRebalanceListener(
                    self._on_assigned, self._on_revoked, self._on_rebalance_error
                ),
            )
            log.info("subscribed", extra={"worker_id": self.settings.worker_id, "pattern": pattern})
            tasks.spawn(self._commit_loop(stop), name="bridge-commit")
            tasks.spawn(self._lag_loop(stop), name="bridge-lag")
            tasks.spawn(self.registry.run(stop), name="bridge-registry")
            tasks.spawn(self.gap_watch.run(stop), name="bridge-gaps")
            await self._consume_loop(stop)
        finally:
            await tasks.close(timeout=10)
            await self._shutdown()

    async def _start_consumer(self) -> bool:
        """One start attempt; a consumer that failed to start is closed and replaced."""
        try:
            await self.consumer.start()
        except BaseException:
            failed, self.consumer = self.consumer, self._new_consumer()
            with contextlib.suppress(Exception):
                await failed.stop()
            raise
        self._started = True
        return True

    def _waiting_for_kafka(self, reason: str) -> None:
        self._kafka_issue = reason

    def _on_rebalance_error(self, exc: BaseException, phase: str) -> None:
        # The assignment is no longer what this worker believes it is: stop, let another
        # worker (or a restart) take the groups over, rather than bridge with a wrong picture.
        self.failed = f"partitions {phase} callback failed: {type(exc).__name__}: {exc}"
        log.error("rebalance failed; stopping", exc_info=exc, extra={"phase": phase})
        self._stop.set()

    async def _shutdown(self) -> None:
        self._backlog.clear()
        for tr in self.trackers.values():
            tr.active = False
        idle = await self.publisher.wait_idle(self.settings.revoke_drain_timeout_s)
        if not idle and any(not tr.drained for tr in self.trackers.values()):
            log.warning("stopping with un-acked records; the next owner re-publishes them")
        if self._started:
            await self._commit(list(self.trackers.values()))
        await self.publisher.close()
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        await self.registry.close()
        await self.gap_watch.close()
        log.info("stopped", extra={"worker_id": self.settings.worker_id})

    # -- consuming --------------------------------------------------------------------------

    async def _consume_loop(self, stop: asyncio.Event) -> None:
        consumer = self.consumer
        while not stop.is_set():
            if self._backlog:
                await self._drain_backlog()
            if self._backlog:
                self._set_paused(True)
                await self.publisher.wait_space(0.2)
                timeout_ms = 0
            else:
                self._set_paused(False)
                timeout_ms = 100
            try:
                batch = await consumer.getmany(
                    timeout_ms=timeout_ms, max_records=self.settings.max_poll_records
                )
            except KafkaError as exc:
                log.warning("Kafka poll failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for tp, records in batch.items():
                tr = self.trackers.get(tp)
                if tr is None or not tr.active:
                    continue
                self.gap_watch.consumed(tp, records)
                self._backlog.extend((tr, r) for r in records)

    def _set_paused(self, paused: bool) -> None:
        if paused:
            # Pause also partitions assigned since the last pause.
            assigned = self.consumer.assignment()
            if assigned:
                self.consumer.pause(*assigned)
        elif self._paused:
            self.consumer.resume(*self.consumer.assignment())
        if paused != self._paused:
            self._paused = paused
            self.metrics.paused.set(1 if paused else 0)

    async def _drain_backlog(self) -> None:
        pub = self.publisher
        backlog = self._backlog
        while backlog and pub.has_space():
            tr, rec = backlog.popleft()
            if not tr.active:
                continue
            src = source_of(rec.headers)
            if src is not None and not tr.dedupe.admit(src):
                self._source_copy(tr, rec.offset)
                continue
            entry = self._entry(tr, rec)
            entry.source = src
            tr.add(entry)
            if entry.subject:
                await pub.submit(entry)
            else:
                tr.ack(entry)

    def _source_copy(self, tr: PartitionTracker, offset: int) -> None:
        """A copy of a record already bridged (a splitter replay, see bridge.dedupe):
        acknowledged in its place without being published, and counted."""
        entry = Entry(tr, offset, "", b"", b"")
        tr.add(entry)
        tr.ack(entry)
        self.metrics.source_duplicates.labels(tr.group).inc()

    def _entry(self, tr: PartitionTracker, rec: Any) -> Entry:
        """Turn a Kafka record into an entry; a record that does not decode becomes an
        already-acked placeholder (counted and logged, never blocking its partition)."""
        try:
            ev = decode_record(rec.key, rec.value)
        except BadRecord as exc:
            self.metrics.bad_records.labels(tr.group, exc.kind).inc()
            log.error(
                "skipping undecodable record",
                extra={
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "offset": rec.offset,
                    "kind": exc.kind,
                    "error": exc.detail,
                },
            )
            return Entry(tr, rec.offset, "", b"", b"")
        headers: dict[str, str] = {}
        ts_type = rec.timestamp_type
        for k, v in rec.headers or ():
            if k == KafkaHeaders.SRC_TIMESTAMP_TYPE and v in (b"0", b"1"):
                # The timestamp is the source record's (the splitter copies it): so is its type.
                ts_type = int(v)
            key = _SRC_HEADERS.get(k) or (_HEADER_KEY_BAD.sub("_", k.strip()) if k else "")
            # Nats-* headers steer JetStream (rollups, expectations): never taken from input.
            if key and not key.lower().startswith("nats-"):
                headers[key] = _header_value(v)
        headers[NatsHeaders.MSG_ID] = Layout.msg_id(rec.topic, rec.partition, rec.offset)
        headers[NatsHeaders.ASSET] = _header_value(ev.asset_uuid.encode())
        headers[NatsHeaders.ITEM] = _header_value(ev.id.encode())
        headers[NatsHeaders.GROUP] = tr.group
        headers[NatsHeaders.KAFKA_TS] = str(rec.timestamp)
        return Entry(
            tr,
            rec.offset,
            self._subject(ev.asset_uuid, ev.id),
            rec.value,
            encode_headers(headers),
            ev.asset_uuid,
            rec.timestamp,
            ts_type,
        )

    def _subject(self, asset: str, item: str) -> str:
        # Encoding tokens is pure but not free; assets and items repeat endlessly.
        cache = self._subjects
        subject = cache.get((asset, item))
        if subject is None:
            if len(cache) > 200_000:
                cache.clear()
            subject = self.layout.stream_subject(asset, item)
            cache[(asset, item)] = subject
        return subject

    def _on_ack(self, entry: Entry, duplicate: bool) -> tuple[str, bytes] | None:
        tr = entry.tracker
        if entry.acked:
            return None
        tr.ack(entry)
        if not tr.active:
            self._ack_event.set()
        counters = self._counters.get(tr.group)
        if counters is None:
            counters = (
                self.metrics.records.labels(tr.group),
                self.metrics.duplicates.labels(tr.group),
            )
            self._counters[tr.group] = counters
        counters[0].inc()
        if duplicate:
            counters[1].inc()
            # Stored by an earlier publish, usually a previous owner's before a failover, which
            # published it in OpenFactory's layout on its ack: publishing again would duplicate
            # it. An earlier publish whose ack was lost (crash, connection reset) was never
            # published there: that is the loss window the README measures.
            return None
        if not self.settings.openfactory_subjects:
            return None
        return self._openfactory_message(entry)

    def _openfactory_message(self, entry: Entry) -> tuple[str, bytes] | None:
        """The record in OpenFactory's layout, or None (counted) when it cannot be carried."""
        try:
            return openfactory.to_openfactory(
                entry.asset,
                entry.payload,
                entry.timestamp,
                entry.timestamp_type,
                int(time.time() * 1000),
                self._reserved_subjects,
            )
        except openfactory.Skipped as exc:
            self.metrics.openfactory_skipped.labels(exc.reason).inc()
            if exc.reason not in self._skip_reasons_logged:
                # Once per reason: a misbehaving producer repeats the same record shape.
                self._skip_reasons_logged.add(exc.reason)
                log.warning(
                    "record not published in OpenFactory's layout (counted in "
                    "ofa_bridge_openfactory_skipped_total; logged once per reason): %s",
                    exc,
                    extra={
                        "topic": entry.tracker.tp.topic,
                        "partition": entry.tracker.tp.partition,
                        "offset": entry.offset,
                        "reason": exc.reason,
                    },
                )
            return None

    def _unacked(self) -> list[Entry]:
        # Includes revoked partitions still draining: their records must reach the stream.
        return [e for tr in list(self.trackers.values()) for e in tr.unacked()]

    async def _on_nats_connect(self, js: JetStreamContext) -> None:
        await ensure_streams(js, self.layout, self.settings)

    # -- rebalancing ------------------------------------------------------------------------

    def _group_of(self, topic: str) -> str:
        try:
            return self.layout.group_from_topic(topic)
        except ValueError:
            return topic

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        new = [tp for tp in assigned if tp not in self.trackers]
        # The source-offset maps committed with the offsets, before any record is fetched.
        saved = await compat.kafka_committed_metadata(self.consumer, new)
        for tp in new:
            self.trackers[tp] = PartitionTracker(
                tp, self._group_of(tp.topic), SourceDedupe(decode_map(saved.get(tp)))
            )
        self._paused = False  # aiokafka starts new assignments unpaused
        self.metrics.paused.set(0)
        groups = sorted({tr.group for tr in self.trackers.values()})
        self.metrics.owned_groups.set(len(groups))
        log.info("assigned groups %s", groups, extra={"groups": groups})
        self.gap_watch.wake()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        trs = [self.trackers[tp] for tp in revoked if tp in self.trackers]
        for tr in trs:
            tr.active = False
        self._backlog = deque(x for x in self._backlog if x[0].active)
        deadline = time.monotonic() + self.settings.revoke_drain_timeout_s
        # Nothing is acknowledged while NATS is away: do not hold a rebalance (or a stop) for
        # it; the next owner re-sends what is un-acked, with the same Nats-Msg-Id.
        while any(not tr.drained for tr in trs) and self.publisher.connected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._ack_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ack_event.wait(), min(remaining, 0.5))
        undrained = [str(tr.tp) for tr in trs if not tr.drained]
        if undrained:
            log.warning("releasing partitions with un-acked records: %s", undrained)
        await self._commit(trs)
        for tr in trs:
            tr.released = True
            self.trackers.pop(tr.tp, None)
            self.gap_watch.released(tr.tp)
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(tr.group)

    # -- periodic work ----------------------------------------------------------------------

    async def _commit(self, trs: list[PartitionTracker]) -> None:
        offsets: dict[TopicPartition, tuple[int, str]] = {}
        for tr in trs:
            due = tr.commit_due()
            if due is not None:
                offsets[tr.tp] = (due, self._dedupe_metadata(tr))
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (KafkaError, AssertionError) as exc:
            log.warning("offset commit failed (retried later or by the next owner): %s", exc)
            return
        self.metrics.commits.inc()
        for tr in trs:
            if tr.tp in offsets:
                tr.committed = offsets[tr.tp][0]

    def _dedupe_metadata(self, tr: PartitionTracker) -> str:
        """The partition's settled source-offset map as commit metadata, cut to the size
        limit (what is left out is not de-duplicated after a restart: counted, logged once)."""
        metadata, dropped = tr.dedupe.metadata(self.settings.dedupe_metadata_max_bytes)
        if dropped:
            self.metrics.dedupe_truncated.inc(dropped)
            if not self._dedupe_truncation_logged:
                self._dedupe_truncation_logged = True
                log.warning(
                    "source-offset map of %s does not fit in %d bytes of commit metadata: "
                    "%d source partitions left out (not de-duplicated after a restart; "
                    "BRIDGE_DEDUPE_METADATA_MAX_BYTES, broker offset.metadata.max.bytes)",
                    tr.tp,
                    self.settings.dedupe_metadata_max_bytes,
                    dropped,
                )
        return metadata

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        interval = self.settings.commit_interval_ms / 1000
        while not stop.is_set():
            await asyncio.sleep(interval)
            await self._commit([tr for tr in self.trackers.values() if tr.active])

    async def _lag_loop(self, stop: asyncio.Event) -> None:
        """Lag gauges, once a second."""
        while not stop.is_set():
            self._update_lag()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def _update_lag(self) -> None:
        lag: dict[str, int] = {}
        # During a rebalance the trackers can still hold partitions the consumer no longer
        # owns; asking aiokafka about those raises (and once ended this loop for good).
        owned = self.consumer.assignment()
        for tr in list(self.trackers.values()):
            if tr.tp not in owned:
                continue
            end = self.consumer.last_stable_offset(tr.tp)
            if end is None:
                end = self.consumer.highwater(tr.tp)
            done = tr.next_commit if tr.next_commit is not None else tr.committed
            if end is None or done is None:
                continue
            lag[tr.group] = lag.get(tr.group, 0) + max(0, end - done)
        for group, value in lag.items():
            self.metrics.lag.labels(group).set(value)

    def _owned(self) -> dict[TopicPartition, PartitionTracker]:
        return self.trackers

    async def _kafka_committed(self, tp: TopicPartition) -> int | None:
        # The group's committed offset (a predecessor's) before this worker committed any.
        return cast(int | None, await self.consumer.committed(tp))

    def owned_groups(self) -> list[str]:
        """Groups this worker currently owns."""
        return sorted({tr.group for tr in self.trackers.values() if tr.active})

    # -- health -----------------------------------------------------------------------------

    async def ready_issues(self) -> dict[str, str]:
        """Empty when Kafka answers and JetStream is connected; else what is not."""
        issues: dict[str, str] = {}
        if not self.publisher.connected:
            reason = self.publisher.last_error or "not connected"
            issues["nats"] = f"waiting for NATS at {self.common.nats_url} (NATS_URL): {reason}"
        if not self._started:
            issues["kafka"] = self._kafka_issue
        else:
            try:
                await asyncio.wait_for(self.consumer.topics(), 3)
            except Exception as exc:
                issues["kafka"] = f"metadata request failed: {type(exc).__name__}: {exc}"
        return issues
