"""A minimal SSE HTTP server standing in for an edge in router tests.

It is not a broker: it only answers `GET /group/<g>/asset_stream` with fixed SSE bytes, so that
the router's redirect and proxy paths can be checked byte for byte. It records every request.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

#: What the edge sends, in separate writes, so that framing across chunk borders is exercised.
CHUNKS: list[bytes] = [
    b"retry: 1000\n\n",
    b'id: 41\nevent: asset_update\ndata: {"ID":"Temp","VALUE":"1"}\n\n',
    b"id: 42\nevent: asset_upd",  # an event split across writes
    b'ate\ndata: {"id":"avail","value":"AVAILABLE"}\n\n',
    b": ping 1\n\n",
    b'id: 43\nevent: asset_update\ndata: {"ID":"Zact","VALUE":-0.328}\n\n',
]


@dataclass
class Seen:
    """One request the edge received."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class FakeEdge:
    """Serves CHUNKS on every stream request, then holds the connection open."""

    chunks: list[bytes] = field(default_factory=lambda: list(CHUNKS))
    #: Seconds to pause after chunk i (instead of 0.02), e.g. in the middle of an event.
    pauses: dict[int, float] = field(default_factory=dict)
    status: int = 200
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _server: asyncio.base_events.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            line = (await reader.readline()).decode("latin-1")
            headers: dict[str, str] = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            target = line.split()[1]
            parts = urlsplit(target)
            self.seen.append(Seen(unquote(parts.path), parse_qs(parts.query), headers))
            if self.status != 200:
                body = b'{"detail": "edge says no"}'
                writer.write(
                    f"HTTP/1.1 {self.status} Nope\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nRetry-After: 7\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
            )
            for i, chunk in enumerate(self.chunks):
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(self.pauses.get(i, 0.02))
            await reader.read()  # hold the stream open until the client goes away
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
