"""SSE wire format. Each event is encoded ONCE to bytes and the same bytes go to every client."""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def _data_lines(data: bytes) -> bytes:
    # The payload is one-line JSON as produced; a multi-line one must become several `data:`
    # lines or the first blank line would end the event early.
    if b"\n" not in data and b"\r" not in data:
        return b"data: " + data + b"\n"
    return b"".join(b"data: " + line + b"\n" for line in _LINE_BREAK.split(data))


def event_frame(seq: int, data: bytes, event: bytes = b"asset_update") -> bytes:
    """``id: <seq>`` / ``event:`` / ``data:`` lines and the blank line that dispatches them."""
    return b"id: %d\nevent: %s\n%s\n" % (seq, event, _data_lines(data))


def named_frame(event: str, data: bytes) -> bytes:
    """An event without ``id:`` (so the client's Last-Event-ID stays unchanged)."""
    return b"event: " + event.encode() + b"\n" + _data_lines(data) + b"\n"


def retry_frame(retry_ms: int) -> bytes:
    """Sets EventSource's reconnect delay."""
    return b"retry: %d\n\n" % retry_ms


def comment(text: str) -> bytes:
    """A comment line (ignored by clients); keeps proxies from closing an idle stream."""
    return b": " + _LINE_BREAK.sub(b" ", text.encode()) + b"\n\n"
