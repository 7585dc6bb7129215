"""A real Server-Sent Events parser (the WHATWG algorithm), fed with bytes as they arrive."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SseEvent:
    """One dispatched event."""

    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class SseParser:
    """Incremental parser: :meth:`feed` returns the events completed by the new bytes."""

    buffer: bytes = b""
    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id_seen: bool = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self.buffer += chunk
        out: list[SseEvent] = []
        while True:
            idx = [
                i
                for i in (
                    self.buffer.find(b"\r\n"),
                    self.buffer.find(b"\n"),
                    self.buffer.find(b"\r"),
                )
                if i >= 0
            ]
            if not idx:
                return out
            i = min(idx)
            sep = 2 if self.buffer[i : i + 2] == b"\r\n" else 1
            line = self.buffer[:i].decode("utf-8")
            self.buffer = self.buffer[i + sep :]
            ev = self._line(line)
            if ev is not None:
                out.append(ev)

    def _line(self, line: str) -> SseEvent | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            ev = SseEvent(
                event=self._event or "message", data="\n".join(self._data), id=self.last_event_id
            )
            self._event = ""
            self._data = []
            return ev
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None
