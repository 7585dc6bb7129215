"""The Kafka side of the contract: topics and headers the splitter writes and others read.

- ``ofa_assets``: input, written by OpenFactory (key = asset uuid, value = JSON).
- ``asset_stream_<group>``: one derived topic per group (see
  :func:`ofa_contract.naming.group_topic`); key = asset uuid, value = the original bytes,
  original headers plus :data:`H_SRC_TOPIC`, :data:`H_SRC_PARTITION`, :data:`H_SRC_OFFSET`,
  :data:`H_GROUP`.
- ``ofa_groups``: compacted; key = group name (UTF-8), value :class:`GroupAnnouncement` JSON.
  Announces every group the splitter has created a topic for.
- ``ofa_splitter_assets``: compacted changelog of the splitter's asset -> group table; key = asset
  uuid (UTF-8), value :class:`AssetGroup` JSON. Written in the same transaction as the outputs,
  so a read_committed reader sees exactly the table the splitter has committed.
- ``ofa_assets_dlq``: records that broke the contract, original key/value/headers plus
  :data:`H_ERROR_KIND`, :data:`H_ERROR` and the source coordinates.
"""

from __future__ import annotations

import msgspec

INPUT_TOPIC = "ofa_assets"
GROUPS_TOPIC = "ofa_groups"
CHANGELOG_TOPIC = "ofa_splitter_assets"
DLQ_TOPIC = "ofa_assets_dlq"
DEFAULT_GROUP = "_ungrouped"

H_SRC_TOPIC = "ofa-src-topic"
H_SRC_PARTITION = "ofa-src-partition"
H_SRC_OFFSET = "ofa-src-offset"
H_GROUP = "ofa-group"
H_ERROR_KIND = "ofa-error-kind"
H_ERROR = "ofa-error"


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
