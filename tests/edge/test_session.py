"""Stream request parsing, without a server (pure logic)."""

from __future__ import annotations

import pytest

from edge.session import Refusal, parse_last_event_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, None), ("", None), ("  ", None), ("0", 0), (" 42 ", 42), ("9" * 19, int("9" * 19))],
)
def test_last_event_id_accepted(raw: str | None, expected: int | None) -> None:
    assert parse_last_event_id(raw) == expected


# "²" and "١٢" are digits to str.isdigit() but not to int(): they once answered 500.
@pytest.mark.parametrize("raw", ["abc", "-1", "1e3", "1.0", "9" * 20, "²", "١٢", "0x10"])
def test_last_event_id_garbage_is_a_400(raw: str) -> None:
    got = parse_last_event_id(raw)
    assert isinstance(got, Refusal)
    assert got.status == 400 and "Last-Event-ID" in got.detail
