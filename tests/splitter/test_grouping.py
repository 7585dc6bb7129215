"""Grouping strategies and settings: pure logic, no broker."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from ofa_contract.events import decode_record
from ofa_contract.layout import Layout
from ofa_contract.settings import SettingsError, from_env
from splitter.grouping import (
    AttributeGrouping,
    FollowsTable,
    GroupingError,
    MappingFileGrouping,
    load_strategy,
)
from splitter.settings import SplitterSettings
from splitter.uns import UnsGrouping, UnsTable, UnsValueError, group_from_uns


def event(asset: str, item: str, value: object, lower: bool = False) -> object:
    body = {"id": item, "value": value} if lower else {"ID": item, "VALUE": value}
    return decode_record(asset.encode(), msgspec.json.encode(body))


def test_attribute_grouping_follows_the_attribute_record() -> None:
    g = AttributeGrouping()
    assert g.group_for(event("A", "avail", "AVAILABLE"), None) is None
    assert g.group_for(event("A", "workcenter", "WC1"), None) == "WC1"
    assert g.group_for(event("A", "Temp", "12"), "WC1") == "WC1"
    assert g.group_for(event("A", "workcenter", "Paint Shop.2", lower=True), "WC1") == (
        "Paint Shop.2"
    )
    # Empty or null values do not ungroup an asset; numbers are names too.
    assert g.group_for(event("A", "workcenter", ""), "WC1") == "WC1"
    assert g.group_for(event("A", "workcenter", None), "WC1") == "WC1"
    assert g.group_for(event("A", "workcenter", 7), None) == "7"


def test_attribute_name_is_configurable() -> None:
    g = load_strategy("attribute", {"attribute": "area"})
    assert g.group_for(event("A", "workcenter", "WC1"), None) is None
    assert g.group_for(event("A", "area", "North"), None) == "North"


def test_mapping_file_json_and_text(tmp_path: Path) -> None:
    js = tmp_path / "map.json"
    js.write_text('{"PROVER3018": "WC1", "LINE3-*": "Line 3", "*": "Rest"}')
    g = load_strategy("mapping", {"path": str(js)})
    assert isinstance(g, MappingFileGrouping)
    assert g.group_for(event("PROVER3018", "x", 1), None) == "WC1"
    assert g.group_for(event("LINE3-ROBOT", "x", 1), None) == "Line 3"
    assert g.group_for(event("OTHER", "x", 1), None) == "Rest"
    txt = tmp_path / "map.txt"
    txt.write_text("# comment\nPROVER3018 WC 1\nVIRTUAL-* = Virtual Line  # trailing\n")
    g2 = MappingFileGrouping.from_options({"path": str(txt)})
    assert g2.lookup("PROVER3018") == "WC 1"
    assert g2.lookup("VIRTUAL-TEMP-SENS-001") == "Virtual Line"
    assert g2.lookup("nope") is None


def test_bad_strategy_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GroupingError, match="no grouping strategy named 'nope'"):
        load_strategy("nope", {})
    with pytest.raises(GroupingError, match="SPLIT_MAPPING_FILE"):
        load_strategy("mapping", {"path": ""})
    bad = tmp_path / "bad.txt"
    bad.write_text("lonely\n")
    with pytest.raises(GroupingError, match=r"bad\.txt:1"):
        load_strategy("mapping", {"path": str(bad)})
    with pytest.raises(GroupingError, match="cannot read"):
        load_strategy("mapping", {"path": str(tmp_path / "missing.json")})


def test_settings_from_env_and_errors() -> None:
    s = from_env(
        SplitterSettings,
        environ={"SPLIT_DEFAULT_GROUP": "", "SPLIT_MAX_COMMIT_INTERVAL_MS": "25"},
    )
    assert s.default_group == "_ungrouped"  # empty env = default (from_env semantics)
    assert s.fallback_group() == "_ungrouped"
    assert (
        from_env(SplitterSettings, environ={"SPLIT_DROP_UNGROUPED": "true"}).fallback_group() == ""
    )
    assert s.max_commit_interval_ms == 25
    with pytest.raises(SettingsError, match="SPLIT_MAX_BATCH_RECORDS"):
        from_env(SplitterSettings, environ={"SPLIT_MAX_BATCH_RECORDS": "lots"})
    with pytest.raises(SettingsError, match="SPLIT_TOPIC_PARTITIONS='0': Expected `int` >= 1"):
        from_env(SplitterSettings, environ={"SPLIT_TOPIC_PARTITIONS": "0"})
    with pytest.raises(SettingsError, match="SPLIT_TXN_START_RETRY_MS='0'"):
        from_env(SplitterSettings, environ={"SPLIT_TXN_START_RETRY_MS": "0"})


def uns_value(asset: str, levels: dict[str, object] | None, lower: bool = False) -> bytes:
    """A UNS map value as OpenFactory writes it (deregistration: lower-case keys, nulls)."""
    if lower:
        return msgspec.json.encode({"asset_uuid": asset, "uns_id": None, "uns_levels": levels})
    return msgspec.json.encode(
        {"ASSET_UUID": asset, "UNS_ID": "x", "UNS_LEVELS": levels, "UPDATED_AT": 1}
    )


def test_group_from_uns_reads_the_level() -> None:
    full = {"inc": "Acme", "area": "North", "workcenter": "WC1", "asset": "A"}
    assert group_from_uns(uns_value("A", full), "workcenter") == "WC1"
    assert group_from_uns(uns_value("A", full), "area") == "North"
    assert group_from_uns(uns_value("A", {"WorkCenter": " Halle Süd/2 "}), "workcenter") == (
        "Halle Süd/2"
    )
    assert group_from_uns(uns_value("A", {"workcenter": 7}), "workcenter") == "7"
    # Names no group: deregistered (null levels, lower-case keys), level absent, empty or null.
    assert group_from_uns(uns_value("A", None, lower=True), "workcenter") is None
    assert group_from_uns(uns_value("A", {"area": "North"}), "workcenter") is None
    assert group_from_uns(uns_value("A", {"workcenter": ""}), "workcenter") is None
    assert group_from_uns(uns_value("A", {"workcenter": None}), "workcenter") is None
    for bad in (b"{", b"[1]", b'{"UNS_LEVELS": "WC1"}', b'{"UNS_LEVELS": {"workcenter": [1]}}'):
        with pytest.raises(UnsValueError):
            group_from_uns(bad, "workcenter")


def test_uns_grouping_map_wins_then_falls_back() -> None:
    g = load_strategy("uns", {"uns_topic": "t", "uns_level": "workcenter"})
    assert isinstance(g, UnsGrouping) and isinstance(g, FollowsTable)
    assert g.table_topic == "t"
    g.apply_table_record(b"A", uns_value("A", {"workcenter": "WC1"}))
    # The map wins over the asset's own workcenter record and over its current group.
    assert g.group_for(event("A", "workcenter", "WC9"), "WC9") == "WC1"
    assert g.group_for(event("A", "Temp", 1), None) == "WC1"
    # Not in the map: the workcenter-record strategy decides.
    assert g.group_for(event("B", "Temp", 1), None) is None
    assert g.group_for(event("B", "workcenter", "WC2"), None) == "WC2"
    # Deregistered: the asset keeps its group until a workcenter record says otherwise.
    g.apply_table_record(b"A", uns_value("A", None, lower=True))
    assert g.group_for(event("A", "Temp", 1), "WC1") == "WC1"
    assert g.group_for(event("A", "workcenter", "WC3"), "WC1") == "WC3"
    # Re-registered elsewhere, then a tombstone; a bad value and a key-less record are counted.
    g.apply_table_record(b"A", uns_value("A", {"workcenter": "WC4"}))
    assert g.group_for(event("A", "Temp", 1), "WC3") == "WC4"
    g.apply_table_record(b"A", None)
    assert g.table_size() == 0
    g.apply_table_record(b"B", uns_value("B", {"workcenter": "WC5"}))
    g.apply_table_record(b"B", b"not json")
    g.apply_table_record(None, uns_value("C", {"workcenter": "WC6"}))
    assert g.table_size() == 0 and g.table.bad_records == 2
    with pytest.raises(GroupingError, match="SPLIT_UNS_LEVEL"):
        UnsTable("")


def test_uns_is_the_default_strategy() -> None:
    env = {"UNS_MAP_TOPIC": "m", "SPLIT_UNS_LEVEL": "area"}
    s = from_env(SplitterSettings, environ=env)
    g = load_strategy(s.grouping, s.grouping_config(Layout.from_env(env).uns_map_topic))
    assert isinstance(g, UnsGrouping)
    assert (g.table_topic, g.table.level, g.fallback.attribute) == ("m", "area", "workcenter")
