"""The gap watcher: finds records JetStream lost after acknowledging them, and re-bridges them.

For the partitions its worker owns it reads the stream (headers only, an ephemeral pull consumer
without acks) from where the previous check ended, notes the Kafka coordinates in every
``Nats-Msg-Id`` (:class:`~bridge.gaps.GapTracker`) and expects every record below the offset the
worker committed: those were acknowledged by JetStream before the commit, so the stream held
them when the check began. A missing offset is only a suspect:

- offsets the worker's own consumer skipped (transaction markers, aborted records) are known
  without asking Kafka (:meth:`GapWatch.consumed`);
- the rest is read from Kafka (read_committed, :func:`~bridge.gaps.records_between`): no record
  there means a marker; a record whose source coordinates (``Ofa-Src-*``) the stream holds for
  that partition already is a copy the bridge skipped on purpose (at-least-once splitting);
- what remains is lost: re-published with its own ``Nats-Msg-Id`` (idempotent), counted in
  ``ofa_bridge_gaps_detected_total`` / ``ofa_bridge_gaps_repaired_total`` and logged, one line per
  range. A re-publish JetStream reports as duplicate was not lost (its de-duplication window still
  knows it: removed by a stream limit), counted in ``ofa_bridge_gaps_dismissed_total``.

A stream that lost its tail hands the lost sequence numbers out again, so the message the last
check ended on is fetched first: gone or different means the stream was rewritten, and the last
duplicate window of it is read again (``ofa_bridge_gap_rescans_total``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from bridge.gap_state import is_newer, newest_stored, restore_latest
from bridge.gaps import Coord, GapTracker, Suspect, parse_msg_id, records_between
from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings
from bridge.tracker import Entry, PartitionTracker
from ofa_contract.layout import KafkaHeaders, Layout, NatsHeaders
from ofa_contract.runtime import get_logger
from ofa_contract.runtime.connect import connect_nats
from ofa_contract.settings import CommonSettings

log = get_logger("bridge", __name__)

#: Source coordinates remembered (all partitions together, oldest forgotten first): a copy
#: skipped on purpose follows its first copy closely, well within this many records.
MAX_SOURCES = 200_000
#: Messages the scan's subscription may hold before flow control holds the server back.
_FLOW_BATCH = 4096
#: Suspects at most this many offsets apart are read from Kafka in one go.
_SPAN_GAP = 500

#: (derived topic, derived partition, source topic, source partition, source offset)
SourceKey = tuple[str, int, str, str, str]
#: Builds the entry the worker would publish for a record (its subject, headers, payload).
Build = Callable[[PartitionTracker, ConsumerRecord[bytes, bytes]], Entry]
#: The consumer group's committed offset of a partition (None when there is none).
Committed = Callable[[TopicPartition], Awaitable[int | None]]


def decode_headers(block: bytes) -> dict[str, str]:
    """The headers of an encoded NATS header block (:func:`bridge.publisher.encode_headers`)."""
    out: dict[str, str] = {}
    for line in block.decode().split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _kafka_source(rec: ConsumerRecord[bytes, bytes]) -> tuple[str, str, str] | None:
    found = {k: v.decode("utf-8", "replace") for k, v in rec.headers or () if v is not None}
    part = found.get(KafkaHeaders.SRC_PARTITION)
    off = found.get(KafkaHeaders.SRC_OFFSET)
    if part is None or off is None:
        return None
    return (found.get(KafkaHeaders.SRC_TOPIC, ""), part, off)


def _runs(
    offsets: Sequence[int], holes: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int, int]]:
    """Sorted offsets as (first, last, count) runs: consecutive, or in the same hole of
    ``holes`` (sorted [start, end) ranges; what lies between is not a record either)."""
    starts = [h[0] for h in holes]

    def hole_of(off: int) -> int:
        i = bisect.bisect_right(starts, off) - 1
        return i if i >= 0 and off < holes[i][1] else -1

    runs: list[tuple[int, int, int]] = []
    last_hole = -1
    for off in offsets:
        hole = hole_of(off)
        if runs and (runs[-1][1] + 1 == off or (hole >= 0 and hole == last_hole)):
            runs[-1] = (runs[-1][0], off, runs[-1][2] + 1)
        else:
            runs.append((off, off, 1))
        last_hole = hole
    return runs


def _spans(parts: list[Suspect]) -> list[Suspect]:
    """Sorted suspects merged into fewer Kafka reads: one read when they are close together
    (every transaction leaves a marker; one fetch each would cost a round trip each)."""
    spans: list[Suspect] = []
    for p in parts:
        if spans and p.start - spans[-1].end <= _SPAN_GAP:
            spans[-1] = spans[-1]._replace(end=max(spans[-1].end, p.end))
        else:
            spans.append(p)
    return spans


class _Scan:
    """One scan's callback: observes messages until ``target``, answers flow control."""

    def __init__(self, nc: Client, observe: Callable[[Msg], Any], target: int) -> None:
        self._nc = nc
        self._observe = observe
        self._target = target
        self._done = asyncio.Event()
        self._progress = asyncio.Event()
        self.seen = 0

    async def on_msg(self, msg: Msg) -> None:
        """Observe one message (or answer a flow-control request)."""
        if msg.headers and msg.headers.get("Status") == "100":
            if msg.reply:  # a flow-control request; an idle heartbeat has no reply
                await self._nc.publish(msg.reply, b"")
                self._progress.set()
            return
        self.seen += 1
        self._progress.set()
        meta = self._observe(msg)
        if meta.sequence.stream >= self._target or meta.num_pending == 0:
            self._done.set()

    async def wait(self, idle_s: float) -> None:
        """Until ``target`` was observed, or nothing came for ``idle_s`` (messages deleted)."""
        while not self._done.is_set():
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), idle_s)
            if not self._progress.is_set():
                return


@dataclass(eq=False)
class GapWatch:
    """Checks the owned partitions against the stream on assignment and every interval."""

    common: CommonSettings
    layout: Layout
    settings: BridgeSettings
    metrics: BridgeMetrics
    #: The worker's partitions and their trackers, read at each check.
    owned: Callable[[], Mapping[TopicPartition, PartitionTracker]]
    #: Builds the entry (subject, headers, payload) of a Kafka record, as the worker does.
    build: Build
    #: The worker's committed offsets of the given partitions.
    committed: Committed
    tracker: GapTracker = field(default_factory=GapTracker, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _nc: Client | None = field(default=None, init=False)
    _kafka: AIOKafkaConsumer | None = field(default=None, init=False)
    #: Source coordinates seen in the stream, per derived partition (insertion ordered).
    _sources: dict[SourceKey, None] = field(default_factory=dict, init=False)
    #: Offsets the worker's consumer skipped (not records), per partition: [start, end).
    _skipped: dict[TopicPartition, list[tuple[int, int]]] = field(default_factory=dict, init=False)
    _last_consumed: dict[TopicPartition, int] = field(default_factory=dict, init=False)
    #: Stream sequence and Nats-Msg-Id of the last message read (None: nothing read yet).
    _last: tuple[int, str] | None = field(default=None, init=False)
    _next_seq: int = field(default=0, init=False)
    #: The holes of the partition being settled (one log line per hole).
    _holes: list[tuple[int, int]] = field(default_factory=list, init=False)
    #: Lost records already counted as detected, until repaired.
    _reported: set[Coord] = field(default_factory=set, init=False)

    # -- hooks from the worker ----------------------------------------------------------------

    def wake(self) -> None:
        """Check soon (partitions were assigned)."""
        self._wake.set()

    def consumed(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        """Note the offsets the worker's read_committed consumer skipped between records."""
        prev = self._last_consumed.get(tp)
        skipped = None
        for rec in records:
            off = rec.offset
            if prev is not None and off > prev + 1:
                if skipped is None:
                    skipped = self._skipped.setdefault(tp, [])
                skipped.append((prev + 1, off))
            prev = off
        if prev is not None:
            self._last_consumed[tp] = prev

    def released(self, tp: TopicPartition) -> None:
        """The partition was revoked: what its consumer skipped is no longer followed."""
        self._skipped.pop(tp, None)
        self._last_consumed.pop(tp, None)

    # -- lifecycle ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Check on every wake-up and every ``gap_check_interval_s`` until ``stop``."""
        interval = self.settings.gap_check_interval_s
        failing = False
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            if stop.is_set():
                return
            try:
                await self.check()
            except Exception as exc:
                self.metrics.gap_check_errors.inc()
                # Once per outage (NATS or Kafka away): the metric counts every failure.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "gap check failed (retried every %.0fs): %s: %s",
                    interval,
                    type(exc).__name__,
                    exc,
                )
                failing = True
                continue
            if failing:
                log.info("gap check succeeded again")
                failing = False

    async def close(self) -> None:
        """Close the watcher's own NATS connection and Kafka consumer."""
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
        kafka, self._kafka = self._kafka, None
        if kafka is not None:
            with contextlib.suppress(Exception):
                await kafka.stop()

    async def _js(self) -> JetStreamContext:
        if self._nc is None or self._nc.is_closed:
            self._nc = await connect_nats(
                self.common.nats_url, f"ofa-bridge-{self.settings.worker_id}-gaps", log=log
            )
        return self._nc.jetstream()

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._kafka is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.common.kafka_bootstrap_servers,
                client_id=f"ofa-bridge-{self.settings.worker_id}-gaps",
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            await consumer.start()
            self._kafka = consumer
        return self._kafka

    # -- one check ----------------------------------------------------------------------------

    async def check(self) -> None:
        """Read the stream on from the last check and settle every suspect below the committed
        offset of each owned partition (re-publishing lost records)."""
        async with self._lock:
            js = await self._js()
            # Committed before the stream's state is read: each of these was stored by then.
            owned = await self._committed_offsets()
            highs: dict[tuple[str, int], int] = {}
            try:
                last_seq = (await js.stream_info(self.layout.stream)).state.last_seq
            except NotFoundError:
                last_seq = 0  # not created yet (the publisher creates it on connecting)
            if await self._rewritten(js, last_seq):
                highs = self.tracker.highs()
                self._restart_tracking()
            await self._scan(js, last_seq)
            self._expect(owned, highs)
            for tp, committed in owned.items():
                await self._settle_partition(js, tp, committed)
            self.metrics.gap_checks.inc()

    async def _committed_offsets(self) -> dict[TopicPartition, int]:
        """The committed offset of each owned partition: this worker's, or before it committed
        any, the group's (what a predecessor had JetStream acknowledge)."""
        out = {}
        for tp, tr in list(self.owned().items()):
            committed = tr.committed if tr.committed is not None else await self.committed(tp)
            if tr.active and committed is not None:
                out[tp] = committed
        return out

    async def _rewritten(self, js: JetStreamContext, last_seq: int) -> bool:
        """True when the stream is shorter than what was read, or the message the last check
        ended on is gone or another one."""
        if self._last is None:
            if last_seq + 1 >= self._next_seq:
                return False
            seq, msg_id, found = self._next_seq - 1, "", "(the stream ends before it)"
        else:
            seq, msg_id = self._last
            try:
                msg = await js.get_msg(self.layout.stream, seq)
            except NotFoundError:
                found = ""
            else:
                found = (msg.headers or {}).get(NatsHeaders.MSG_ID, "")
            if found == msg_id:
                return False
        self.metrics.gap_rescans.inc()
        log.warning(
            "stream %s no longer holds message %d (%s) read before (found %r): it lost "
            "messages; reading its last %.0fs again",
            self.layout.stream,
            seq,
            msg_id,
            found,
            self.settings.duplicate_window_s,
            extra={"stream": self.layout.stream, "seq": seq, "msg_id": msg_id},
        )
        return True

    def _restart_tracking(self) -> None:
        self.tracker = GapTracker()
        self._sources.clear()
        self._last = None
        self._next_seq = 0

    def _start_config(self) -> ConsumerConfig:
        if self._next_seq:
            return ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._next_seq
            )
        # First read (or after a rewrite): the duplicate window, where re-publishing is
        # idempotent; older records are not checked.
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
            seconds=self.settings.duplicate_window_s
        )
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)

    async def _scan(self, js: JetStreamContext, target: int) -> None:
        """Observe every message from the next sequence up to ``target`` (the stream's last).

        A push consumer delivering to a plain callback subscription: a pull ``fetch`` costs
        nats.py a task per message, about half of the CPU the scan takes.
        """
        if not target or target < self._next_seq:
            return
        nc = self._nc
        assert nc is not None
        scan = _Scan(nc, self._observe, target)
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=scan.on_msg, pending_msgs_limit=4 * _FLOW_BATCH)
        cfg = self._start_config()
        cfg.deliver_subject = inbox
        cfg.filter_subject = self.layout.stream_subjects()
        cfg.ack_policy = AckPolicy.NONE
        cfg.headers_only = True
        cfg.mem_storage = True
        cfg.flow_control = True
        cfg.idle_heartbeat = 1.0
        # The server removes the consumer soon after its subscriber is gone (also after a crash).
        cfg.inactive_threshold = 10.0
        first_read = not self._next_seq
        try:
            info = await js.add_consumer(self.layout.stream, cfg)
            try:
                await scan.wait(idle_s=3.0)
            finally:
                with contextlib.suppress(Exception):
                    await js.delete_consumer(self.layout.stream, info.name)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if first_read and not scan.seen:
            self._next_seq = target + 1  # nothing in the window: go on from the end next time

    def _observe(self, msg: Msg) -> Msg.Metadata:
        headers = msg.headers or {}
        msg_id = headers.get(NatsHeaders.MSG_ID, "")
        meta = msg.metadata
        seq = meta.sequence.stream
        self._last = (seq, msg_id)
        self._next_seq = seq + 1
        coord = parse_msg_id(msg_id)
        if coord is None:
            return meta
        self.tracker.observe(coord)
        part = headers.get(NatsHeaders.SRC_PARTITION)
        off = headers.get(NatsHeaders.SRC_OFFSET)
        if part is not None and off is not None:
            src = headers.get(NatsHeaders.SRC_TOPIC, "")
            self._sources[(coord.topic, coord.partition, src, part, off)] = None
            if len(self._sources) > MAX_SOURCES:
                del self._sources[next(iter(self._sources))]
        return meta

    def _expect(
        self, owned: Mapping[TopicPartition, int], highs: Mapping[tuple[str, int], int]
    ) -> None:
        """Expect each owned partition up to its committed offset (and, after a rewrite, up to
        what the stream held before); holes of partitions others own are theirs to check."""
        owned_keys = {(tp.topic, tp.partition) for tp in owned}
        for topic, part in list(self.tracker.highs()):
            if (topic, part) not in owned_keys:
                self.tracker.drop_holes(topic, part)
        for tp, committed in owned.items():
            upto = max(committed, highs.get((tp.topic, tp.partition), -1) + 1)
            if self.tracker.knows(tp.topic, tp.partition):
                self.tracker.expect_up_to(tp.topic, tp.partition, upto)
            else:
                # Nothing of it in the stream since tracking began: check from here on.
                self.tracker.start_at(tp.topic, tp.partition, upto)

    # -- settling suspects --------------------------------------------------------------------

    def _unexplained(self, tp: TopicPartition, suspect: Suspect) -> list[Suspect]:
        """The parts of ``suspect`` the worker's consumer did not skip itself."""
        parts = [suspect]
        for start, end in self._skipped.get(tp, ()):
            if end <= suspect.start or start >= suspect.end:
                continue
            cut = []
            for p in parts:
                if p.start < start:
                    cut.append(p._replace(end=min(p.end, start)))
                if p.end > end:
                    cut.append(p._replace(start=max(p.start, end)))
            parts = [p for p in cut if p.start < p.end]
        return parts

    async def _settle_partition(self, js: JetStreamContext, tp: TopicPartition, upto: int) -> None:
        suspects = [
            s._replace(end=min(s.end, upto))
            for s in self.tracker.suspects()
            if (s.topic, s.partition) == (tp.topic, tp.partition) and s.start < upto
        ]
        parts = [p for s in suspects for p in self._unexplained(tp, s)]
        self._holes = [(s.start, s.end) for s in suspects]
        if parts:
            await self._resolve(js, tp, parts)
        for suspect in suspects:
            self.tracker.settle(suspect)
        skipped = self._skipped.get(tp)
        if skipped:
            # Below the committed offset every suspect was settled: forget those ranges.
            skipped[:] = [r for r in skipped if r[1] > upto]

    async def _resolve(
        self, js: JetStreamContext, tp: TopicPartition, parts: list[Suspect]
    ) -> None:
        """Ask Kafka about ``parts`` (sorted); re-publish what is lost (raises to retry later)."""
        parts = await self._still_in_kafka(tp, parts)
        starts = [p.start for p in parts]
        records = []
        for span in _spans(parts):
            for rec in await records_between(await self._consumer(), span):
                i = bisect.bisect_right(starts, rec.offset) - 1
                if i >= 0 and rec.offset < parts[i].end:
                    records.append(rec)
        not_records = sum(p.end - p.start for p in parts) - len(records)
        if not_records:
            self.metrics.gaps_dismissed.labels("not_a_record").inc(not_records)
        lost = []
        for rec in records:
            src = _kafka_source(rec)
            if src is not None and (tp.topic, tp.partition, *src) in self._sources:
                self.metrics.gaps_dismissed.labels("source_duplicate").inc()
            else:
                lost.append(rec)
        if lost:
            await self._repair(js, tp, lost)

    async def _still_in_kafka(self, tp: TopicPartition, parts: list[Suspect]) -> list[Suspect]:
        """The parts Kafka still holds; offsets its retention removed are alarmed (lost for
        good: not even Kafka can tell whether they were records or markers)."""
        consumer = await self._consumer()
        begin = (await consumer.beginning_offsets([tp]))[tp]
        gone = [p._replace(end=min(p.end, begin)) for p in parts if p.start < begin]
        if not gone:
            return parts
        count = sum(p.end - p.start for p in gone)
        self.metrics.gaps_unrecoverable.inc(count)
        log.error(
            "%d offset(s) missing from the stream are no longer in Kafka either (retention): "
            "%s[%d] %s; whatever records they held are lost for good",
            count,
            tp.topic,
            tp.partition,
            [f"{p.start}..{p.end - 1}" for p in gone],
            extra={"topic": tp.topic, "partition": tp.partition, "offsets": count},
        )
        return [p._replace(start=max(p.start, begin)) for p in parts if p.end > begin]

    async def _repair(
        self, js: JetStreamContext, tp: TopicPartition, lost: list[ConsumerRecord[bytes, bytes]]
    ) -> None:
        tr = self.owned().get(tp)
        if tr is None:
            return  # revoked meanwhile: the new owner checks it
        repaired: list[int] = []
        stored_before: list[int] = []
        entries = [(rec, self.build(tr, rec)) for rec in lost]
        subjects = {e.subject for _, e in entries if e.subject}
        newest = await newest_stored(js, self.layout.stream, subjects)
        last_repaired: dict[str, Entry] = {}
        try:
            for rec, entry in entries:
                if not entry.subject:
                    self.metrics.gaps_dismissed.labels("undecodable").inc()
                    continue
                ack = await js.publish(
                    entry.subject,
                    entry.payload,
                    timeout=self.settings.ack_timeout_s,
                    headers=decode_headers(entry.headers),
                )
                (stored_before if ack.duplicate else repaired).append(rec.offset)
                if not ack.duplicate:
                    last_repaired[entry.subject] = entry
        except Exception:
            # Detected but not repaired: counted (once) and alarmed now, repaired next check.
            done = {*repaired, *stored_before}
            self._alarm(tr, [r.offset for r in lost if r.offset not in done], repaired=False)
            raise
        finally:
            self._count(tr, repaired, stored_before)
        await self._keep_state(js, newest, last_repaired)

    async def _keep_state(
        self, js: JetStreamContext, newest: Mapping[str, Any], repaired: Mapping[str, Entry]
    ) -> None:
        """Set each item's state back to the newer record where a re-published one took it."""
        for subject, entry in repaired.items():
            newer = newest.get(subject)
            if newer is None or not is_newer(newer, entry):
                continue
            msg_id = Layout.msg_id(entry.tracker.tp.topic, entry.tracker.tp.partition, entry.offset)
            if await restore_latest(js, self.layout, newer, msg_id, self.settings.ack_timeout_s):
                self.metrics.gap_states_restored.inc()

    def _count(self, tr: PartitionTracker, repaired: list[int], stored_before: list[int]) -> None:
        tp = tr.tp
        if stored_before:
            self.metrics.gaps_dismissed.labels("deduplicated").inc(len(stored_before))
            log.info(
                "records missing from the stream but known to its de-duplication window "
                "(removed by a stream limit?), not re-published: %s",
                [f"{a}..{b}" for a, b, _ in _runs(stored_before, self._holes)],
                extra={"topic": tp.topic, "partition": tp.partition},
            )
        if repaired:
            self.metrics.gaps_repaired.labels(tr.group).inc(len(repaired))
            self._alarm(tr, repaired, repaired=True)

    def _alarm(self, tr: PartitionTracker, offsets: list[int], *, repaired: bool) -> None:
        """Count lost records as detected (once each) and log one line per range."""
        new = [o for o in offsets if Coord(tr.tp.topic, tr.tp.partition, o) not in self._reported]
        if new:
            self.metrics.gaps_detected.labels(tr.group).inc(len(new))
        if repaired:
            self._reported.difference_update(
                Coord(tr.tp.topic, tr.tp.partition, o) for o in offsets
            )
        else:
            self._reported.update(Coord(tr.tp.topic, tr.tp.partition, o) for o in new)
        outcome = (
            "re-published (same Nats-Msg-Id), now at the end of the stream"
            if repaired
            else "re-publishing failed; retried at the next check"
        )
        for first, last, count in _runs(offsets, self._holes):
            log.error(
                "JetStream lost %d acknowledged record(s) that Kafka holds: %s[%d] offsets "
                "%d..%d; %s",
                count,
                tr.tp.topic,
                tr.tp.partition,
                first,
                last,
                outcome,
                extra={
                    "topic": tr.tp.topic,
                    "partition": tr.tp.partition,
                    "start_offset": first,
                    "end_offset": last,
                    "records": count,
                    "group": tr.group,
                    "repaired": repaired,
                },
            )
