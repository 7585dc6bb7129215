"""The router's asset -> group table, kept fresh by following the splitter's changelog.

The splitter writes its table to a compacted topic (key = asset uuid, value = AssetGroup JSON) in
the same transaction as its outputs. Reading it ``read_committed`` from the beginning and then
following it gives exactly the table the splitter has committed, with no query per request; an
asset that moves to another group is seen as soon as the splitter commits the move. The same
consumer follows the compacted ``groups`` topic (GroupAnnouncement) for /groups.

An asset whose records are on several input partitions (OpenFactory's gateway producer partitions
by CRC32, its other producers by murmur2) has an entry in several changelog partitions, and the
partitions are read in no particular order: the entry with the latest ``updated_ms`` wins, so the
index names the group the splitter moved the asset to last.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ofa_contract.compat import kafka_cluster_metadata
from ofa_contract.runtime import cancel_and_wait, get_logger
from ofa_contract.topics import (
    BadCompactedRecord,
    GroupAnnouncement,
    compacted_key,
    decode_asset_group,
    fold_announcement,
)

log = get_logger("router", "group_index")

#: How often the reader looks for topics or partitions that appeared since the last look.
METADATA_REFRESH_S = 5.0


class GroupIndex:
    """Follows the changelog and groups topics; answers :meth:`group_of` from memory."""

    def __init__(self, bootstrap: str, changelog_topic: str, groups_topic: str) -> None:
        self.bootstrap = bootstrap
        self.changelog_topic = changelog_topic
        self.groups_topic = groups_topic
        self._assets: dict[str, str] = {}
        #: asset -> (updated_ms, changelog partition) of the entry in ``_assets``.
        self._stamps: dict[str, tuple[int, int]] = {}
        self._groups: dict[str, GroupAnnouncement] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._assigned: set[TopicPartition] = set()
        #: End offsets at the time of assignment: the table is loaded when they are reached.
        self._initial_ends: dict[TopicPartition, int] = {}
        self.caught_up = asyncio.Event()
        self.changed = asyncio.Condition()
        self.records = 0
        self.bad_records = 0
        self.last_error = ""

    # ------------------------------------------------------------------ queries

    def group_of(self, asset_uuid: str) -> str | None:
        """The asset's current group, or None when the splitter has not grouped it."""
        return self._assets.get(asset_uuid)

    def assets(self) -> dict[str, str]:
        """A copy of the asset -> group table."""
        return dict(self._assets)

    def groups(self) -> dict[str, GroupAnnouncement]:
        """Announced groups by name."""
        return dict(self._groups)

    def issues(self) -> dict[str, str]:
        """What keeps the index from being trustworthy right now (empty when fine)."""
        out: dict[str, str] = {}
        if not any(tp.topic == self.changelog_topic for tp in self._assigned):
            out["group_index"] = f"changelog topic {self.changelog_topic!r} not found yet"
        elif not self.caught_up.is_set():
            out["group_index"] = "still loading the changelog"
        if self.last_error:
            out["group_index_error"] = self.last_error
        return out

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start following; returns at once (loading happens in the background)."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            metadata_max_age_ms=int(METADATA_REFRESH_S * 1000),
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="group-index")

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def kafka_metadata(self, timeout: float) -> set[str]:
        """Topics the cluster reports now (a real metadata round trip); raises on failure."""
        assert self._consumer is not None
        topics: set[str] = await asyncio.wait_for(self._consumer.topics(), timeout)
        return topics

    async def wait_for(self, asset_uuid: str, group: str | None, timeout: float = 10.0) -> None:
        """Wait until :meth:`group_of` answers ``group`` (for tests and start-up ordering)."""
        deadline = time.monotonic() + timeout
        async with self.changed:
            while self.group_of(asset_uuid) != group:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{asset_uuid!r} not in group {group!r} within {timeout}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), left)

    # ------------------------------------------------------------------ the loop

    async def _refresh_assignment(self) -> None:
        """Assign every partition of both topics, keeping positions of those already read."""
        consumer = self._consumer
        assert consumer is not None
        # A fresh full metadata round trip: the consumer's own cache only knows assigned topics.
        cluster = await kafka_cluster_metadata(consumer)
        wanted: set[TopicPartition] = set()
        for topic in (self.changelog_topic, self.groups_topic):
            for p in cluster.partitions_for_topic(topic) or ():
                wanted.add(TopicPartition(topic, p))
        if wanted == self._assigned or not wanted:
            return
        positions: dict[TopicPartition, int] = {}
        for tp in self._assigned:
            with contextlib.suppress(Exception):
                positions[tp] = await consumer.position(tp)
        consumer.assign(sorted(wanted))
        for tp in wanted:
            if tp in positions:
                consumer.seek(tp, positions[tp])
            else:
                await consumer.seek_to_beginning(tp)
        new = wanted - self._assigned
        self._assigned = wanted
        if not self.caught_up.is_set():
            ends = await consumer.end_offsets(sorted(new))
            self._initial_ends.update(ends)
        log.info("group index follows its topics", extra={"partitions": len(wanted)})

    async def _check_caught_up(self) -> None:
        if self.caught_up.is_set() or not self._initial_ends:
            return
        if not any(tp.topic == self.changelog_topic for tp in self._assigned):
            return
        assert self._consumer is not None
        for tp, end in self._initial_ends.items():
            if await self._consumer.position(tp) < end:
                return
        self.caught_up.set()
        log.info(
            "group index loaded",
            extra={"assets": len(self._assets), "groups": len(self._groups)},
        )

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        next_refresh = 0.0
        while True:
            try:
                if time.monotonic() >= next_refresh:
                    await self._refresh_assignment()
                    next_refresh = time.monotonic() + METADATA_REFRESH_S
                if not self._assigned:
                    await asyncio.sleep(0.5)
                    continue
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                changed = False
                for recs in batch.values():
                    for rec in recs:
                        changed |= self._apply(rec.topic, rec.key, rec.value, rec.partition)
                if changed:
                    async with self.changed:
                        self.changed.notify_all()
                await self._check_caught_up()
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep following: Kafka outages are transient
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("group index read failed", extra={"error": self.last_error})
                await asyncio.sleep(1.0)

    def _apply(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int = 0
    ) -> bool:
        """Apply one compacted record; a tombstone removes the key. Returns True on change."""
        self.records += 1
        try:
            if topic == self.changelog_topic:
                return self._apply_asset(compacted_key(key), value, partition)
            return fold_announcement(self._groups, key, value)
        except BadCompactedRecord as exc:
            self.bad_records += 1
            log.warning("bad compacted record skipped", extra={"topic": topic, "error": str(exc)})
            return False

    def _apply_asset(self, name: str, value: bytes | None, partition: int) -> bool:
        """Apply a changelog record: later in the same partition always wins, from another
        partition only when it is newer (``updated_ms``)."""
        stamp = self._stamps.get(name)
        if value is None:
            if stamp is not None and stamp[1] != partition:
                return False  # another partition's entry is the current one
            self._stamps.pop(name, None)
            return self._assets.pop(name, None) is not None
        entry = decode_asset_group(value)
        if stamp is not None and stamp[1] != partition and entry.updated_ms < stamp[0]:
            return False
        self._stamps[name] = (entry.updated_ms, partition)
        old = self._assets.get(name)
        self._assets[name] = entry.group
        return old != entry.group

    def snapshot(self) -> dict[str, Any]:
        """Counters for /info and metrics."""
        return {
            "assets": len(self._assets),
            "groups": len(self._groups),
            "records_read": self.records,
            "bad_records": self.bad_records,
            "loaded": self.caught_up.is_set(),
        }
