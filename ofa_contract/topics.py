"""The Kafka side of the contract: the values of the compacted topics and their codecs. Topic
names come from :class:`ofa_contract.layout.Layout`, header names from
:class:`ofa_contract.layout.KafkaHeaders`.

- ``ofa_assets``: input, written by OpenFactory (key = asset uuid, value = JSON).
- ``asset_stream_<group>``: one derived topic per group (see :meth:`Layout.group_topic`);
  key = asset uuid, value = the original bytes, timestamp = the source record's, original
  headers plus ``KafkaHeaders.SRC_TOPIC``, ``SRC_PARTITION``, ``SRC_OFFSET``, ``GROUP`` and
  ``SRC_TIMESTAMP_TYPE``.
- ``ofa_groups``: compacted; key = group name (UTF-8), value :class:`GroupAnnouncement` JSON.
  Announces every group the splitter has created a topic for.
- ``ofa_splitter_assets``: compacted changelog of the splitter's asset -> group table; key = asset
  uuid (UTF-8), value :class:`AssetGroup` JSON. Written in the same transaction as the outputs,
  so a read_committed reader sees exactly the table the splitter has committed.
- ``ofa_assets_dlq``: records that broke the contract, original key/value/headers plus
  ``KafkaHeaders.ERROR_KIND``, ``KafkaHeaders.ERROR`` and the source coordinates.
"""

from __future__ import annotations

import msgspec

# Where an asset goes when the grouping cannot place it (the splitter's default).
DEFAULT_GROUP = "_ungrouped"


class GroupAnnouncement(msgspec.Struct, kw_only=True):
    """Value of an ``ofa_groups`` record."""

    group: str
    topic: str
    partitions: int
    created_ms: int


class AssetGroup(msgspec.Struct, kw_only=True):
    """Value of an ``ofa_splitter_assets`` record: the asset's current group."""

    group: str
    updated_ms: int = 0


class BadCompactedRecord(ValueError):
    """A record of a compacted topic (``ofa_groups``, ``ofa_splitter_assets``) that cannot be
    applied: no key, or a value that is not the expected JSON."""


_asset_group_decoder = msgspec.json.Decoder(AssetGroup)
_announcement_decoder = msgspec.json.Decoder(GroupAnnouncement)


def decode_asset_group(value: bytes) -> AssetGroup:
    """Decode an ``ofa_splitter_assets`` value; :class:`BadCompactedRecord` when unreadable."""
    try:
        return _asset_group_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise BadCompactedRecord(f"bad changelog value: {exc}") from None


def decode_announcement(value: bytes) -> GroupAnnouncement:
    """Decode an ``ofa_groups`` value; :class:`BadCompactedRecord` when unreadable."""
    try:
        return _announcement_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise BadCompactedRecord(f"bad group announcement: {exc}") from None


def compacted_key(key: bytes | None) -> str:
    """The key of a compacted-topic record as text; :class:`BadCompactedRecord` when missing."""
    if key is None:
        raise BadCompactedRecord("compacted record without a key")
    return key.decode("utf-8", "replace")


def fold_changelog(table: dict[str, str], key: bytes | None, value: bytes | None) -> bool:
    """Apply one ``ofa_splitter_assets`` record to an asset -> group table (a tombstone removes
    the asset). True when the table changed; :class:`BadCompactedRecord` for a bad record, which
    the caller counts and skips. The splitter's restore uses it; the router's index, which merges
    several changelog partitions' entries by ``updated_ms``, builds on :func:`compacted_key` and
    :func:`decode_asset_group` instead."""
    asset = compacted_key(key)
    if value is None:
        return table.pop(asset, None) is not None
    group = decode_asset_group(value).group
    old = table.get(asset)
    table[asset] = group
    return old != group


def fold_announcement(
    groups: dict[str, GroupAnnouncement], key: bytes | None, value: bytes | None
) -> bool:
    """Apply one ``ofa_groups`` record to a group -> announcement table (tombstone removes).
    True when the table changed; :class:`BadCompactedRecord` for a bad record."""
    name = compacted_key(key)
    if value is None:
        return groups.pop(name, None) is not None
    ann = decode_announcement(value)
    changed = groups.get(name) != ann
    groups[name] = ann
    return changed
