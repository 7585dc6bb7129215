"""Detect Kafka records that JetStream lost after acknowledging them.

Every stored message carries the Kafka coordinates of its record in ``Nats-Msg-Id``
(``<topic>:<partition>:<offset>``). Reading the stream in order, the offsets of one partition
must cover every record Kafka holds for it up to the bridge's committed offset. A hole in the
offsets is only a *suspect*: transactional topics spend an offset on every commit marker and
aborted records are never bridged, so a suspect becomes a *gap* only when Kafka, read with
``read_committed``, really has a record at one of its offsets. Holes are also filled late: after
a reconnect the bridge re-sends un-acked records, so offset 7 may be stored after offset 8.

:class:`GapTracker` is pure bookkeeping; :func:`records_in` asks Kafka which suspect offsets are
records. Lost records must be re-bridged (same Nats-Msg-Id) or at least alarmed: never silence
(JetStream acknowledged writes it had not synced: Jepsen, NATS 2.12.1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


class Coord(NamedTuple):
    """Where a record lives in Kafka."""

    topic: str
    partition: int
    offset: int


def parse_msg_id(msg_id: str) -> Coord | None:
    """The coordinates in a ``Nats-Msg-Id`` (None when it is not ours).

    Kafka topic names cannot hold ``:``, so the last two fields are partition and offset.
    """
    parts = msg_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    try:
        partition, offset = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if partition < 0 or offset < 0:
        return None
    return Coord(parts[0], partition, offset)


@dataclass
class _Partition:
    #: Highest offset seen; every offset below it is seen or in ``holes``.
    high: int = -1
    #: Unseen offsets below ``high``: first offset -> (end exclusive, when it was first missed).
    holes: dict[int, tuple[int, float]] = field(default_factory=dict)


class Suspect(NamedTuple):
    """Offsets [start, end) of one partition missing from the stream for ``age_s`` seconds."""

    topic: str
    partition: int
    start: int
    end: int
    age_s: float


class GapTracker:
    """Offsets seen in the stream per partition, and the holes between them."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._clock = clock

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def start_at(self, topic: str, partition: int, offset: int) -> None:
        """Track ``topic``/``partition`` from ``offset`` on (earlier offsets are not checked)."""
        self._parts[(topic, partition)] = _Partition(high=offset - 1)

    def observe(self, coord: Coord) -> None:
        """Note a stored message; an offset past the highest opens a hole before it."""
        p = self._parts.setdefault((coord.topic, coord.partition), _Partition(coord.offset - 1))
        if coord.offset > p.high:
            if coord.offset > p.high + 1:
                p.holes[p.high + 1] = (coord.offset, self._now())
            p.high = coord.offset
            return
        self._fill(p, coord.offset)

    @staticmethod
    def _fill(p: _Partition, offset: int) -> None:
        for start, (end, since) in list(p.holes.items()):
            if start <= offset < end:
                del p.holes[start]
                if start < offset:
                    p.holes[start] = (offset, since)
                if offset + 1 < end:
                    p.holes[offset + 1] = (end, since)
                return

    def expect_up_to(self, topic: str, partition: int, committed: int) -> None:
        """The bridge committed ``committed`` (the next offset to read): every record below it
        was acknowledged by JetStream, so offsets above the highest seen are a hole too (the
        lost tail of the stream)."""
        p = self._parts.setdefault((topic, partition), _Partition())
        if committed - 1 > p.high:
            p.holes[p.high + 1] = (committed, self._now())
            p.high = committed - 1

    def suspects(self, older_than_s: float = 0.0) -> list[Suspect]:
        """Holes missing for longer than ``older_than_s`` (re-sends had time to fill them)."""
        now = self._now()
        out = []
        for (topic, part), p in sorted(self._parts.items()):
            for start, (end, since) in sorted(p.holes.items()):
                if now - since >= older_than_s:
                    out.append(Suspect(topic, part, start, end, now - since))
        return out

    def settle(self, suspect: Suspect) -> None:
        """Forget a suspect once it was checked against Kafka (and re-bridged or alarmed).

        Only [start, end) is forgotten: a suspect cut short of its hole leaves the rest open.
        """
        p = self._parts.get((suspect.topic, suspect.partition))
        if p is None:
            return
        hole = p.holes.pop(suspect.start, None)
        if hole is not None and hole[0] > suspect.end:
            p.holes[suspect.end] = hole

    def knows(self, topic: str, partition: int) -> bool:
        """True once the partition was observed or started."""
        return (topic, partition) in self._parts

    def highs(self) -> dict[tuple[str, int], int]:
        """The highest offset seen (or expected) per partition."""
        return {key: p.high for key, p in self._parts.items()}

    def drop_holes(self, topic: str, partition: int) -> None:
        """Forget the holes of a partition someone else checks (keep its high mark)."""
        p = self._parts.get((topic, partition))
        if p is not None:
            p.holes.clear()


async def records_in(
    consumer: AIOKafkaConsumer, suspect: Suspect, timeout_s: float = 10.0
) -> list[int]:
    """Offsets in the suspect range where Kafka (read_committed) holds a record: lost ones.

    ``consumer`` must be an ``isolation_level="read_committed"`` consumer without a group.
    Commit markers and aborted records are skipped by Kafka and so never reported.
    """
    return [r.offset for r in await records_between(consumer, suspect, timeout_s)]


async def records_between(
    consumer: AIOKafkaConsumer, suspect: Suspect, timeout_s: float = 10.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records (read_committed) in the suspect range, as :func:`records_in` finds them."""
    tp = TopicPartition(suspect.topic, suspect.partition)
    consumer.assign([tp])
    consumer.seek(tp, suspect.start)
    found: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(tp, timeout_ms=200)
        for rec in batch.get(tp, []):
            if rec.offset >= suspect.end:
                return found
            found.append(rec)
        # Markers (and aborted records) at the end of the range return no record: stop once
        # the position passed the range or the partition's last stable offset.
        position = await consumer.position(tp)
        if position >= suspect.end or position >= (await consumer.end_offsets([tp]))[tp]:
            return found
    raise TimeoutError(f"Kafka did not return {suspect} within {timeout_s}s")
