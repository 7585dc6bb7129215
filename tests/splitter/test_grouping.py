"""Grouping strategies and settings: pure logic, no broker."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from ofa_contract.events import decode_record
from ofa_contract.settings import SettingsError, from_env
from splitter.grouping import (
    AttributeGrouping,
    GroupingError,
    MappingFileGrouping,
    load_strategy,
)
from splitter.settings import SplitterSettings


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
        "SPLIT_",
        {"SPLIT_DEFAULT_GROUP": "", "SPLIT_MAX_COMMIT_INTERVAL_MS": "25"},
    )
    assert s.default_group == "_ungrouped"  # empty env = default (from_env semantics)
    assert s.fallback_group() == "_ungrouped"
    assert (
        from_env(SplitterSettings, "SPLIT_", {"SPLIT_DROP_UNGROUPED": "true"}).fallback_group()
        == ""
    )
    assert s.max_commit_interval_ms == 25
    with pytest.raises(SettingsError, match="SPLIT_MAX_BATCH_RECORDS"):
        from_env(SplitterSettings, "SPLIT_", {"SPLIT_MAX_BATCH_RECORDS": "lots"})
    with pytest.raises(SettingsError, match="SPLIT_TOPIC_PARTITIONS must be > 0"):
        from_env(SplitterSettings, "SPLIT_", {"SPLIT_TOPIC_PARTITIONS": "0"})
    with pytest.raises(SettingsError, match="SPLIT_TXN_START_RETRY_MS must be > 0"):
        from_env(SplitterSettings, "SPLIT_", {"SPLIT_TXN_START_RETRY_MS": "0"})
