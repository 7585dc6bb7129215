"""Grouping strategies: which group (workcenter, line, ...) an asset belongs to.

A strategy sees every valid record of ``ofa_assets`` together with the asset's current group (as
recorded in the splitter's table) and returns the asset's group from this record on, or ``None``
for "no group". Strategies are pure and synchronous: they run once per record on the hot path.

Strategies are plugins: the Python entry-point group ``ofa_serving.grouping`` maps a name to a
class with a ``from_options(options: Mapping[str, str])`` class method. Built in:

- ``uns`` (:class:`splitter.uns.UnsGrouping`, the default): OpenFactory's UNS map decides, the
  ``attribute`` strategy when the map names no group (see :mod:`splitter.uns`).
- ``attribute`` (:class:`AttributeGrouping`): the asset's group is the value of its latest
  ``<attribute>`` record (``ID=workcenter`` by default; any UNS level can be named).
- ``mapping`` (:class:`MappingFileGrouping`): a static file maps asset uuids or glob patterns to
  groups.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from ofa_contract.events import AssetEvent

ENTRY_POINT_GROUP = "ofa_serving.grouping"


class GroupingError(ValueError):
    """A strategy could not be loaded or configured; the message says why."""


@runtime_checkable
class GroupingStrategy(Protocol):
    """What the splitter needs from a strategy."""

    def group_for(self, event: AssetEvent, current: str | None) -> str | None:
        """The asset's group from ``event`` on (``current`` is its group so far, or None)."""
        ...


@runtime_checkable
class FollowsTable(Protocol):
    """A strategy that reads a compacted topic as a global table (all partitions). The splitter
    reads the topic to its end before it processes any input record, then follows it live and
    hands every record to :meth:`apply_table_record`, in the event loop that calls
    :meth:`GroupingStrategy.group_for`."""

    table_topic: str

    def apply_table_record(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record of the table topic (``value`` None = tombstone)."""
        ...

    def table_size(self) -> int:
        """Entries in the table (for metrics)."""
        ...


class AttributeGrouping:
    """Group = value of the asset's latest ``attribute`` record (default ``workcenter``).

    A record whose id is the attribute and whose value is a non-empty string or a number sets the
    group; every other record leaves it as it is. Ids are matched exactly (OpenFactory writes
    ``workcenter`` in lower case in both producer families).
    """

    def __init__(self, attribute: str = "workcenter") -> None:
        if not attribute:
            raise GroupingError("the grouping attribute name must not be empty")
        self.attribute = attribute

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> AttributeGrouping:
        """Build from options; ``attribute`` names the UNS level (default ``workcenter``)."""
        return cls(options.get("attribute") or "workcenter")

    def group_for(self, event: AssetEvent, current: str | None) -> str | None:
        """See :class:`GroupingStrategy`."""
        if event.id != self.attribute:
            return current
        value = event.value
        if isinstance(value, bool) or value is None:
            return current
        if isinstance(value, (int, float)):
            return str(value)
        text = value.strip()
        return text or current


class MappingFileGrouping:
    """Group from a static mapping file: asset uuid or glob pattern -> group.

    The file is either a JSON object ``{"PROVER3018": "WC1", "LINE3-*": "Line 3"}`` or text with one
    ``<pattern> <group>`` (or ``<pattern> = <group>``) per line, ``#`` starting a comment; the
    group may contain spaces. Exact uuids win over patterns; patterns are tried in file order
    (``fnmatch`` syntax, case-sensitive). An asset that matches nothing has no group.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.exact: dict[str, str] = {}
        self.patterns: list[tuple[str, str]] = []
        for pattern, group in mapping.items():
            if not pattern or not group:
                raise GroupingError(f"empty pattern or group in mapping entry {pattern!r}")
            if any(ch in pattern for ch in "*?["):
                self.patterns.append((pattern, group))
            else:
                self.exact[pattern] = group

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> MappingFileGrouping:
        """Build from options; ``path`` names the mapping file (required)."""
        path = options.get("path", "")
        if not path:
            raise GroupingError("the mapping strategy needs a mapping file (SPLIT_MAPPING_FILE)")
        return cls(load_mapping_file(Path(path)))

    def group_for(self, event: AssetEvent, current: str | None) -> str | None:
        """See :class:`GroupingStrategy`; the file decides, the record content does not."""
        return self.lookup(event.asset_uuid)

    def lookup(self, asset_uuid: str) -> str | None:
        """The mapped group of an asset uuid, or None."""
        group = self.exact.get(asset_uuid)
        if group is not None:
            return group
        for pattern, grp in self.patterns:
            if fnmatch.fnmatchcase(asset_uuid, pattern):
                return grp
        return None


def load_mapping_file(path: Path) -> dict[str, str]:
    """Read a mapping file (JSON object or text lines); raise :class:`GroupingError` if bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GroupingError(f"cannot read mapping file {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        try:
            return msgspec.json.decode(text, type=dict[str, str])
        except msgspec.DecodeError as exc:
            raise GroupingError(
                f"mapping file {path} is not a JSON object of strings: {exc}"
            ) from None
    mapping: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" in line:
            pattern, _, group = line.partition("=")
        else:
            pattern, _, group = line.partition(" ")
        pattern, group = pattern.strip(), group.strip()
        if not pattern or not group:
            raise GroupingError(f"{path}:{lineno}: expected '<pattern> <group>', got {raw!r}")
        mapping[pattern] = group
    return mapping


def available_strategies() -> list[str]:
    """Names of the installed strategies."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_strategy(name: str, options: Mapping[str, str]) -> GroupingStrategy:
    """Load the strategy registered as ``name`` and configure it with ``options``."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise GroupingError(
            f"no grouping strategy named {name!r}; installed: {', '.join(available_strategies())}"
        )
    cls = found[0].load()
    factory = getattr(cls, "from_options", None)
    if factory is None:
        raise GroupingError(f"grouping strategy {name!r} ({cls!r}) has no from_options()")
    strategy = factory(options)
    if not isinstance(strategy, GroupingStrategy):
        raise GroupingError(f"grouping strategy {name!r} built {strategy!r}, lacking group_for()")
    return strategy
