"""Reading compacted topics to their end: the splitter's table restore and group announcements.

Reads use ``read_committed``, so the end is the last stable offset: the table restored is exactly
what committed transactions wrote, never the output of an aborted or still-open one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from ofa_contract.topics import AssetGroup, GroupAnnouncement

log = logging.getLogger("ofa_serving.splitter")

_asset_group = msgspec.json.Decoder(AssetGroup)
_announcement = msgspec.json.Decoder(GroupAnnouncement)


class RestoreTimeout(TimeoutError):
    """A compacted topic could not be read to its end within the deadline."""


async def read_to_end(
    bootstrap: str,
    parts: Iterable[TopicPartition],
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
    *,
    timeout: float,
) -> int:
    """Read ``parts`` from the beginning to their last stable offset, calling ``apply`` per
    record; return the number of records read."""
    tps = list(parts)
    if not tps:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    count = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
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
            for records in batch.values():
                for rec in records:
                    apply(rec)
                    count += 1
            await asyncio.sleep(0)
        return count
    finally:
        await consumer.stop()


def apply_changelog(table: dict[str, str]) -> Callable[[ConsumerRecord[bytes, bytes]], None]:
    """A record handler that folds ``ofa_splitter_assets`` records into ``table``."""

    def apply(rec: ConsumerRecord[bytes, bytes]) -> None:
        if rec.key is None:
            return
        asset = rec.key.decode("utf-8", "replace")
        if rec.value is None:
            table.pop(asset, None)
            return
        try:
            table[asset] = _asset_group.decode(rec.value).group
        except msgspec.DecodeError as exc:
            log.error(
                "unreadable changelog record ignored",
                extra={"partition": rec.partition, "offset": rec.offset, "error": str(exc)},
            )

    return apply


def apply_announcements(
    groups: dict[str, GroupAnnouncement],
) -> Callable[[ConsumerRecord[bytes, bytes]], None]:
    """A record handler that folds ``ofa_groups`` records into ``groups``."""

    def apply(rec: ConsumerRecord[bytes, bytes]) -> None:
        if rec.key is None:
            return
        name = rec.key.decode("utf-8", "replace")
        if rec.value is None:
            groups.pop(name, None)
            return
        try:
            groups[name] = _announcement.decode(rec.value)
        except msgspec.DecodeError as exc:
            log.error(
                "unreadable group announcement ignored",
                extra={"offset": rec.offset, "error": str(exc)},
            )

    return apply
