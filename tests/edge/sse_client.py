"""A real SSE client for tests: raw HTTP/1.1 over asyncio and chunked decoding, feeding the
suite's WHATWG event-stream parser (tests/sse.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from urllib.parse import urlsplit

from tests.sse import SseEvent, SseParser


class SSEConnection:
    """One streaming GET: ``status``/``headers`` after :meth:`open`, then :meth:`next_event`."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, rcvbuf: int | None = None):
        self.url = url
        self.req_headers = headers or {}
        self.rcvbuf = rcvbuf
        self.status = 0
        self.headers: dict[str, str] = {}
        self.parser = SseParser()
        self.body = b""  # for non-streaming answers
        self.eof = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._queue: list[SseEvent] = []
        self._chunk_left = 0

    async def open(self) -> SSEConnection:
        u = urlsplit(self.url)
        sock = socket.socket()
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (u.hostname, u.port))
        kw = {"limit": self.rcvbuf} if self.rcvbuf else {}
        self._reader, self._writer = await asyncio.open_connection(sock=sock, **kw)
        path = u.path + ("?" + u.query if u.query else "")
        lines = [f"GET {path} HTTP/1.1", f"Host: {u.netloc}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in self.req_headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()
        status = await self._reader.readline()
        self.status = int(status.split()[1])
        while True:
            line = (await self._reader.readline()).decode().rstrip("\r\n")
            if not line:
                break
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.headers.get("content-type", "").startswith("text/event-stream"):
            return self
        if "content-length" in self.headers:
            self.body = await self._reader.readexactly(int(self.headers["content-length"]))
        else:
            self.body = await self._read_all_chunks()
        await self.close()
        return self

    async def _read_all_chunks(self) -> bytes:
        out = b""
        while (chunk := await self._read_chunk()) is not None:
            out += chunk
        return out

    async def _read_chunk(self) -> bytes | None:
        """The next piece of the chunked body; None at its end or at EOF."""
        assert self._reader is not None
        if self._chunk_left == 0:
            size_line = await self._reader.readline()
            if not size_line:
                return None
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await self._reader.readline()
                return None
            self._chunk_left = size
        data = await self._reader.read(min(self._chunk_left, 65536))
        if not data:
            return None
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            await self._reader.readline()
        return data

    async def pump(self) -> bool:
        """Read one piece of body into the parser; False at the end of the stream."""
        if self.eof:
            return False
        try:
            data = await self._read_chunk()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            data = None
        if data is None:
            self.eof = True
            return False
        self._queue.extend(self.parser.feed(data))
        return True

    async def next_event(self, timeout: float = 10.0) -> SseEvent | None:
        """The next event, or None when the stream ended; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._queue:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no event in time")
            if not await asyncio.wait_for(self.pump(), left):
                return None
        return self._queue.pop(0)

    async def events_until(self, pred, timeout: float = 15.0) -> list[SseEvent]:
        """Collect events until ``pred(events)`` holds (or the stream ends / time runs out)."""
        got: list[SseEvent] = []
        deadline = time.monotonic() + timeout
        while not pred(got):
            ev = await self.next_event(max(0.01, deadline - time.monotonic()))
            if ev is None:
                break
            got.append(ev)
        return got

    async def drain_to_end(self, timeout: float = 15.0) -> list[SseEvent]:
        """Every remaining event until the server ends the stream."""
        got: list[SseEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next_event(max(0.01, deadline - time.monotonic()))
            if ev is None:
                return got
            got.append(ev)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None


async def sse_get(url: str, headers: dict[str, str] | None = None, **kw) -> SSEConnection:
    return await SSEConnection(url, headers, **kw).open()
