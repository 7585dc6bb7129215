"""The one decoder of the compacted topics (splitter restore and router index share it)."""

from __future__ import annotations

import msgspec
import pytest

from ofa_contract.topics import (
    AssetGroup,
    BadCompactedRecord,
    GroupAnnouncement,
    fold_announcement,
    fold_changelog,
)


def test_fold_changelog() -> None:
    table: dict[str, str] = {}
    rec = msgspec.json.encode(AssetGroup(group="wc1", updated_ms=1))
    assert fold_changelog(table, b"A1", rec) is True
    assert fold_changelog(table, b"A1", rec) is False
    assert table == {"A1": "wc1"}
    assert fold_changelog(table, b"A1", None) is True
    assert table == {}
    with pytest.raises(BadCompactedRecord):
        fold_changelog(table, None, rec)
    with pytest.raises(BadCompactedRecord):
        fold_changelog(table, b"A1", b"{")


def test_fold_announcement() -> None:
    groups: dict[str, GroupAnnouncement] = {}
    ann = GroupAnnouncement(group="wc1", topic="asset_stream_wc1", partitions=3, created_ms=5)
    assert fold_announcement(groups, b"wc1", msgspec.json.encode(ann)) is True
    assert fold_announcement(groups, b"wc1", msgspec.json.encode(ann)) is False
    assert groups["wc1"].partitions == 3
    with pytest.raises(BadCompactedRecord):
        fold_announcement(groups, b"wc1", b'{"group": 1}')
    assert fold_announcement(groups, b"wc1", None) is True and groups == {}
