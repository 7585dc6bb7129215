"""Grouping by OpenFactory's UNS map (strategy ``uns``, the default).

OpenFactory records each asset's place in its Unified Namespace in the compacted topic
``asset_to_uns_map_topic`` (key = asset uuid as raw UTF-8, value JSON
``{"ASSET_UUID", "UNS_ID", "UNS_LEVELS": {"inc", "area", "workcenter", "asset", ...},
"UPDATED_AT"}``) and groups the records of ``ofa_assets`` with a stream-table join on
``UNS_LEVELS[<level>]``. This strategy does the same: the map is a global table (see
:mod:`splitter.global_table`), so a record finds its asset's group whatever partition it is on and
however long ago the asset was registered.

When the map names no group for an asset (no entry, deregistered, no such level) the
``workcenter``-record strategy decides (:class:`splitter.grouping.AttributeGrouping`): a plant
without the topic works as before, and an asset that is deregistered keeps its last group until a
record says otherwise. Deregistration writes the key with null ``uns_id``/``uns_levels`` (lower
case keys in that path), or a tombstone: both remove the entry. Keys are matched
case-insensitively, as OpenFactory's writers differ in case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ofa_contract.events import AssetEvent
from ofa_contract.layout import DEFAULT_LAYOUT
from ofa_contract.runtime import get_logger
from splitter.grouping import AttributeGrouping, GroupingError

log = get_logger("splitter", __name__)

#: OpenFactory's level default (the topic's is the layout's ``uns_map_topic``).
UNS_LEVEL = "workcenter"


class UnsValueError(ValueError):
    """A UNS map value that is not the JSON object OpenFactory writes."""


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """``obj[name]``, else the first key equal to ``name`` ignoring case, else None."""
    if name in obj:
        return obj[name]
    lower = name.lower()
    for key, value in obj.items():
        if key.lower() == lower:
            return value
    return None


def group_from_uns(value: bytes, level: str) -> str | None:
    """The group a UNS map value names at ``level``; None when it names none (deregistered,
    level absent or empty). Raises :class:`UnsValueError` for a value that is not a UNS record."""
    try:
        doc = msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise UnsValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UnsValueError(f"expected a JSON object, got {type(doc).__name__}")
    levels = _field(doc, "UNS_LEVELS")
    if levels is None:
        return None
    if not isinstance(levels, dict):
        raise UnsValueError(f"UNS_LEVELS is a {type(levels).__name__}, not an object")
    group = _field(levels, level)
    if isinstance(group, bool) or group is None:
        return None
    if isinstance(group, (int, float)):
        return str(group)
    if isinstance(group, str):
        return group.strip() or None
    raise UnsValueError(f"UNS_LEVELS[{level!r}] is a {type(group).__name__}, not a name")


class UnsTable:
    """Asset uuid -> group at one UNS level, folded from the UNS map's records."""

    def __init__(self, level: str) -> None:
        if not level:
            raise GroupingError("the UNS level must not be empty (SPLIT_UNS_LEVEL)")
        self.level = level
        self._groups: dict[str, str] = {}
        self.bad_records = 0

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, asset_uuid: str) -> str | None:
        """The asset's group according to the map, or None."""
        return self._groups.get(asset_uuid)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record of the map; the latest record of a key is the truth."""
        if key is None:
            self.bad_records += 1
            log.warning("UNS map record without a key ignored")
            return
        asset = key.decode("utf-8", "replace")
        if value is None:
            self._groups.pop(asset, None)
            return
        try:
            group = group_from_uns(value, self.level)
        except UnsValueError as exc:
            # The record replaced whatever the map said before: the asset has no map group now.
            self.bad_records += 1
            log.warning("unreadable UNS map record", extra={"asset": asset, "error": str(exc)})
            group = None
        if group is None:
            self._groups.pop(asset, None)
        else:
            self._groups[asset] = group


class UnsGrouping:
    """Group = ``UNS_LEVELS[level]`` of the asset in the UNS map, else the attribute strategy."""

    def __init__(self, topic: str, level: str, fallback: AttributeGrouping) -> None:
        if not topic:
            raise GroupingError("the UNS map topic must not be empty (UNS_MAP_TOPIC)")
        self.table_topic = topic
        self.table = UnsTable(level)
        self.fallback = fallback

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> UnsGrouping:
        """Build from options: ``uns_topic``, ``uns_level`` and the fallback's ``attribute``."""
        return cls(
            options.get("uns_topic") or DEFAULT_LAYOUT.uns_map_topic,
            options.get("uns_level") or UNS_LEVEL,
            AttributeGrouping.from_options(options),
        )

    def group_for(self, event: AssetEvent, current: str | None) -> str | None:
        """See :class:`splitter.grouping.GroupingStrategy`; the map wins when it names a group."""
        group = self.table.get(event.asset_uuid)
        if group is not None:
            return group
        return self.fallback.group_for(event, current)

    def apply_table_record(self, key: bytes | None, value: bytes | None) -> None:
        """See :class:`splitter.grouping.FollowsTable`."""
        self.table.apply(key, value)

    def table_size(self) -> int:
        """See :class:`splitter.grouping.FollowsTable`."""
        return len(self.table)
