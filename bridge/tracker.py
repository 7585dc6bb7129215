"""Per-partition bookkeeping: which offsets are published but not yet acknowledged.

The committable offset of a partition is the offset of its lowest un-acked record (or one past
the last record when everything is acked): committing further could lose a record on a crash;
committing less only causes a replay, which JetStream's de-duplication window absorbs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka import TopicPartition

from bridge.dedupe import Source, SourceDedupe


@dataclass(slots=True, eq=False)
class Entry:
    """One Kafka record on its way into JetStream (kept until acked, for resending).

    ``headers`` is the encoded NATS header block (``NATS/1.0`` line included), built once.
    ``asset``, ``timestamp`` and ``timestamp_type`` (the Kafka record's) feed the OpenFactory
    layout message published once the stream stored the record. Compared by identity
    (``eq=False``): two records are never the same entry.
    """

    tracker: PartitionTracker
    offset: int
    subject: str
    payload: bytes
    headers: bytes
    asset: str = ""
    timestamp: int = -1
    timestamp_type: int = 0
    acked: bool = False
    sent_at: float = 0.0
    #: The source record's coordinates (``ofa_assets``), when the record carries them.
    source: Source | None = None


class PartitionTracker:
    """Un-acked entries of one assigned partition, in offset order."""

    __slots__ = (
        "active",
        "committed",
        "dedupe",
        "group",
        "next_commit",
        "pending",
        "released",
        "tp",
    )

    def __init__(self, tp: TopicPartition, group: str, dedupe: SourceDedupe | None = None) -> None:
        self.tp = tp
        self.group = group
        #: Source-offset maps (see bridge.dedupe), restored from the committed metadata.
        self.dedupe = dedupe if dedupe is not None else SourceDedupe()
        #: False once revoked: no new record is taken for it (the ones held behind their
        #: asset's un-acked record are still sent while the revocation drains).
        self.active = True
        #: True once handed back to the group: its next owner re-sends what is un-acked, so
        #: nothing of it may be sent any more.
        self.released = False
        self.pending: deque[Entry] = deque()
        #: Offset to commit next (None until a record was handled).
        self.next_commit: int | None = None
        #: Offset last committed to Kafka by this worker.
        self.committed: int | None = None

    def add(self, entry: Entry) -> None:
        """Record that ``entry`` was handed to the publisher (offsets only increase)."""
        self.pending.append(entry)

    def ack(self, entry: Entry) -> None:
        """Mark ``entry`` acknowledged and advance the committable offset past acked ones."""
        entry.acked = True
        pending = self.pending
        while pending and pending[0].acked:
            done = pending.popleft()
            self.next_commit = done.offset + 1
            if done.source is not None:
                self.dedupe.settle(done.source)

    def unacked(self) -> Iterator[Entry]:
        """Entries still waiting for their ack, lowest offset first."""
        return (e for e in self.pending if not e.acked)

    @property
    def drained(self) -> bool:
        """True when nothing of this partition is waiting for an ack."""
        return not self.pending

    def commit_due(self) -> int | None:
        """The offset to commit now, or None when nothing new is committable."""
        if self.next_commit is None or self.next_commit == self.committed:
            return None
        return self.next_commit
