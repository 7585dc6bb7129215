"""Reading compacted topics to their end: the splitter's table restore and group announcements.

Reads use ``read_committed``, so the end is the last stable offset: the table restored is exactly
what committed transactions wrote, never the output of an aborted or still-open one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Required, TypedDict, TypeVar, Unpack

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from ofa_contract.runtime import get_logger
from ofa_contract.topics import (
    BadCompactedRecord,
    GroupAnnouncement,
    fold_announcement,
    fold_changelog,
)

log = get_logger("splitter", __name__)


class RestoreTimeout(TimeoutError):
    """A compacted topic could not be read to its end within the deadline."""


class ReadBounds(TypedDict, total=False):
    """How far :func:`drain_to_end` reads: ``timeout`` (seconds, required) for the whole read,
    ``until`` the offset per partition to stop at when lower than the partition's end."""

    timeout: Required[float]
    until: dict[TopicPartition, int] | None


async def read_to_end(
    bootstrap: str,
    parts: Iterable[TopicPartition],
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
    **bounds: Unpack[ReadBounds],
) -> int:
    """:func:`drain_to_end` with a consumer of its own, assigned ``parts``; return the number
    of records read."""
    tps = list(parts)
    if not tps:
        return 0
    consumer = table_consumer(bootstrap)
    await consumer.start()
    try:
        consumer.assign(tps)
        return await drain_to_end(consumer, tps, apply, **bounds)
    finally:
        await consumer.stop()


def table_consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A group-less ``read_committed`` consumer for reading compacted tables."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


async def drain_to_end(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    timeout: float,
    until: dict[TopicPartition, int] | None = None,
) -> int:
    """Seek the assigned ``tps`` to the beginning and read them to the end offsets they have
    now (or to ``until``'s, when lower), calling ``apply`` per record; the consumer stays usable
    to follow them afterwards."""
    count = 0
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    for tp, stop in (until or {}).items():
        if tp in ends:
            ends[tp] = min(ends[tp], stop)
    deadline = time.monotonic() + timeout
    pending = {tp for tp in tps if ends[tp] > 0}
    while pending:
        # Positions, not record offsets, decide the end: the last offset of a partition
        # may be a transaction marker, which is never returned as a record.
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
        if not pending:
            break
        if time.monotonic() > deadline:
            raise RestoreTimeout(
                f"could not read {sorted(str(tp) for tp in pending)} to their end "
                f"within {timeout:.0f}s"
            )
        batch = await consumer.getmany(*pending, timeout_ms=200, max_records=10000)
        for tp, records in batch.items():
            for rec in records:
                if rec.offset >= ends[tp]:
                    break  # past ``until``: the position check above ends this partition
                apply(rec)
                count += 1
        await asyncio.sleep(0)
    return count


RecordHandler = Callable[[ConsumerRecord[bytes, bytes]], None]
S = TypeVar("S")


def _folding(fold: Callable[[S, bytes | None, bytes | None], object], state: S) -> RecordHandler:
    """A record handler that folds each record into ``state``; bad records are logged, skipped."""

    def apply(rec: ConsumerRecord[bytes, bytes]) -> None:
        try:
            fold(state, rec.key, rec.value)
        except BadCompactedRecord as exc:
            _skipped(rec, exc)

    return apply


def apply_changelog(table: dict[str, str]) -> RecordHandler:
    """A record handler that folds ``ofa_splitter_assets`` records into ``table``."""
    return _folding(fold_changelog, table)


def apply_announcements(groups: dict[str, GroupAnnouncement]) -> RecordHandler:
    """A record handler that folds ``ofa_groups`` records into ``groups``."""
    return _folding(fold_announcement, groups)


def _skipped(rec: ConsumerRecord[bytes, bytes], exc: BadCompactedRecord) -> None:
    log.error(
        "unreadable compacted record ignored",
        extra={
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
            "error": str(exc),
        },
    )
