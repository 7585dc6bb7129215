"""The one Server-Sent Events parser of the test suite (the WHATWG event-stream algorithm), fed
with bytes as they arrive: lines end in CR, LF or CRLF (also when CR and LF arrive in different
chunks), UTF-8 is decoded per line (so a character split across chunks is fine), `id`, `event`,
`data` and `retry` fields, comments, dispatch on a blank line, one leading space stripped."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SseEvent:
    """One dispatched event; ``id`` is the last event id in force when it was dispatched."""

    event: str = "message"
    data: str = ""
    id: str = ""

    @property
    def type(self) -> str:
        """The event type (the name EventSource uses)."""
        return self.event


@dataclass
class SseParser:
    """Incremental parser: :meth:`feed` returns the events completed by the new bytes."""

    buffer: bytes = b""
    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _skip_lf: bool = False
    _started: bool = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse ``chunk``; return the events it completed."""
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._skip_lf = False
        self.buffer += chunk
        if not self._started and len(self.buffer) >= 3:
            self._started = True
            self.buffer = self.buffer.removeprefix(b"\xef\xbb\xbf")
        out: list[SseEvent] = []
        while True:
            cr, lf = self.buffer.find(b"\r"), self.buffer.find(b"\n")
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                return out
            i = min(ends)
            line = self.buffer[:i].decode("utf-8")
            if i == cr and i + 1 == len(self.buffer):
                # A CR at the end of a chunk: an LF starting the next one belongs to it.
                self._skip_lf = True
                self.buffer = b""
            else:
                self.buffer = self.buffer[i + (2 if self.buffer[i : i + 2] == b"\r\n" else 1) :]
            ev = self._line(line)
            if ev is not None:
                out.append(ev)

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            ev = SseEvent(self._event or "message", "\n".join(self._data), self.last_event_id)
            self._event, self._data = "", []
            return ev
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return None
        name, sep, value = line.partition(":")
        value = value.removeprefix(" ") if sep else ""
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None
