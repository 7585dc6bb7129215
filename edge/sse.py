"""SSE wire format. Each event is encoded ONCE to bytes and the same bytes go to every client."""

from __future__ import annotations

import re
from typing import Any

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


def chunk(frame: bytes) -> bytes:
    """``frame`` as one HTTP/1.1 chunk (what uvicorn writes for one body part of a stream)."""
    return b"%x\r\n%s\r\n" % (len(frame), frame)


class DirectWriter:
    """Writes chunks straight to the socket of a streaming response served by uvicorn's
    httptools protocol, bypassing the ASGI stack (generator, Litestar, ``send``): a live frame
    then costs one ``transport.write`` per client instead of a task wake-up and a trip through
    three layers (docs/decisions.md, "direct writes").

    Only valid while the response's own body iterator is idle (nothing of it is in flight),
    which the caller guarantees; refuses (returns False) when the socket pushes back or the
    response is over, and the frame then takes the ASGI path with its flow control. The bytes
    bypass every ASGI middleware: a middleware that transforms bodies (compression) must not be
    put in front of the stream routes.
    """

    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._flow = cycle.flow
        self._transport = cycle.transport

    @classmethod
    def of(cls, cycle: Any) -> DirectWriter | None:
        """A writer for uvicorn's httptools request cycle of a started chunked response; None
        for anything else (h11, HTTP/2 servers, tests' transports): those keep the ASGI path."""
        if type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
            return None
        if not getattr(cycle, "response_started", False) or cycle.chunked_encoding is not True:
            return None
        return cls(cycle)

    def write(self, chunked: bytes) -> bool:
        """Write one pre-framed chunk now; False when it must wait for the socket instead."""
        cycle = self._cycle
        if (
            self._flow.write_paused
            or cycle.disconnected
            or cycle.response_complete
            or self._transport.is_closing()
        ):
            return False
        self._transport.write(chunked)
        return True
