"""De-duplication by SOURCE coordinates, per derived partition.

A splitter in ``at_least_once`` mode that crashes writes the records of its last uncommitted
stretch again: the copies land in the derived topic at new offsets, so their Nats-Msg-Id
(the derived coordinates) is new and JetStream's duplicate window cannot recognise them. What
the copies share with the originals is the ``ofa_assets`` coordinates in their headers
(``ofa-src-topic``/``-partition``/``-offset``). Within one derived partition, the records of one
source partition arrive in source-offset order (one writer per source partition at a time,
idempotent producer), and a replay restarts from an earlier source offset; so a record whose
source offset is not above the highest one already bridged from that source partition is a
copy, acknowledged without being published.

Two maps per derived partition:

- ``seen``: the highest source offset handed to the publisher (or recognised as a copy), per
  source partition; it decides.
- ``settled``: the same, but only over the records below the partition's committable offset
  (acked in order). This one is committed with the offset, as Kafka offset-commit metadata, and
  read back on assignment: a map that claimed a record above the committed offset could make
  the next owner skip a record that was never published.

Any subset of a settled map is safe to persist (a missing entry only means no de-duplication
for that source partition after a restart, as before this module existed); that is what happens
past the metadata size limit (see :meth:`SourceDedupe.metadata`).
"""

from __future__ import annotations

from collections.abc import Iterable

from ofa_contract.layout import KafkaHeaders

#: A source record: (topic, partition, offset).
Source = tuple[str, int, int]

#: Prefix and version of the metadata format: ``ofa-src1;<topic>=<p>:<o>,<p>:<o>;<topic>=...``
#: (Kafka topic names cannot contain ``;=,:``).
_MAGIC = "ofa-src1"


def source_of(headers: Iterable[tuple[str, bytes]] | None) -> Source | None:
    """The source coordinates in a derived record's headers, or None when it has none (or they
    do not parse: such a record takes the path of records without them, no de-duplication)."""
    topic = partition = offset = None
    for key, value in headers or ():
        if key == KafkaHeaders.SRC_TOPIC:
            topic = value
        elif key == KafkaHeaders.SRC_PARTITION:
            partition = value
        elif key == KafkaHeaders.SRC_OFFSET:
            offset = value
    if topic is None or partition is None or offset is None:
        return None
    try:
        return topic.decode(), int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None


class SourceDedupe:
    """The two source-offset maps of one derived partition."""

    __slots__ = ("seen", "settled")

    def __init__(self, restored: dict[tuple[str, int], int] | None = None) -> None:
        self.settled: dict[tuple[str, int], int] = dict(restored or {})
        self.seen: dict[tuple[str, int], int] = dict(self.settled)

    def admit(self, src: Source) -> bool:
        """True when the record is new (to be published); False for a copy of one bridged."""
        key = (src[0], src[1])
        last = self.seen.get(key)
        if last is not None and src[2] <= last:
            return False
        self.seen[key] = src[2]
        return True

    def settle(self, src: Source) -> None:
        """Fold a record that is now below the committable offset into the settled map."""
        key = (src[0], src[1])
        if src[2] > self.settled.get(key, -1):
            self.settled[key] = src[2]

    def metadata(self, limit: int) -> tuple[str, int]:
        """The settled map as commit metadata of at most ``limit`` bytes, and how many entries
        were left out to fit (the lowest source partitions are kept; the ones left out are not
        de-duplicated after a restart)."""
        return encode_map(self.settled, limit)


def encode_map(entries: dict[tuple[str, int], int], limit: int) -> tuple[str, int]:
    """``entries`` in the metadata format within ``limit`` bytes; and the number dropped."""
    if not entries:
        return "", 0
    by_topic: dict[str, list[str]] = {}
    size = len(_MAGIC)
    dropped = 0
    for (topic, partition), offset in sorted(entries.items()):
        item = f"{partition}:{offset}"
        # ";topic=" for a topic's first entry, "," before each further one.
        cost = len(item) + (1 if topic in by_topic else len(topic.encode()) + 2)
        if size + cost > limit:
            dropped += 1
            continue
        size += cost
        by_topic.setdefault(topic, []).append(item)
    if not by_topic:
        return "", dropped
    body = ";".join(f"{t}={','.join(items)}" for t, items in by_topic.items())
    return f"{_MAGIC};{body}", dropped


def decode_map(metadata: str | None) -> dict[tuple[str, int], int]:
    """A map written by :func:`encode_map`; anything else (empty, another format, garbage) is
    an empty map: no de-duplication rather than a wrong one."""
    if not metadata or not metadata.startswith(_MAGIC + ";"):
        return {}
    out: dict[tuple[str, int], int] = {}
    try:
        for part in metadata[len(_MAGIC) + 1 :].split(";"):
            topic, _, items = part.partition("=")
            if not topic or not items:
                return {}
            for item in items.split(","):
                p, _, o = item.partition(":")
                out[(topic, int(p))] = int(o)
    except ValueError:
        return {}
    return out
