"""The test suite's SSE parser follows the WHATWG rules (it judges every SSE test)."""

from __future__ import annotations

from tests.sse import SseParser

STREAM = (
    b"\xef\xbb\xbfretry: 1000\n\n: ping\n"
    b'id: 7\r\nevent: asset_update\rdata: {"a":\n'
    b"data:  1}\r\n\r\n"
    b"data: no id change\n\n"
    b"event: reset\nid\ndata: x\n\n"
    b"data: \xc3\xa9\n\n"
)


def test_whole_stream() -> None:
    p = SseParser()
    evs = p.feed(STREAM)
    assert [(e.event, e.data, e.id) for e in evs] == [
        ("asset_update", '{"a":\n 1}', "7"),
        ("message", "no id change", "7"),
        ("reset", "x", ""),
        ("message", "é", ""),
    ]
    assert p.retry == 1000
    assert p.comments == ["ping"]


def test_byte_by_byte_gives_the_same_events() -> None:
    whole = [(e.event, e.data, e.id) for e in SseParser().feed(STREAM)]
    p = SseParser()
    split = [(e.event, e.data, e.id) for i in range(len(STREAM)) for e in p.feed(STREAM[i : i + 1])]
    assert split == whole


def test_cr_and_lf_in_different_chunks_are_one_line_end() -> None:
    p = SseParser()
    assert p.feed(b"data: a\r") == []
    assert [e.data for e in p.feed(b"\n\r\n")] == ["a"]
