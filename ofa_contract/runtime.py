"""What every long-running process shares: structured logs, SIGTERM handling and a small
operations HTTP port (`/health`, `/ready`, `/metrics`) for processes that serve no other HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={...}`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, val in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = val
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(doc, enc_hook=str).decode()


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once for a process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at WARNING/ERROR; keep them but not their chatter.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT so the process can drain, commit and close."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


ReadyCheck = Callable[[], Awaitable[dict[str, str]]]


class OpsServer:
    """A tiny HTTP/1.1 server for `/health`, `/ready` and `/metrics`.

    ``ready`` returns a dict of issues (empty when ready), so `/ready` says what is wrong.
    Kept dependency-free so that data-path processes do not need a web framework.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ready: ReadyCheck,
        registry: CollectorRegistry = REGISTRY,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._ready = ready
        self._registry = registry
        self._info = info or {}
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Start listening; ``port=0`` picks a free port (see :attr:`port` afterwards)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close the server."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            status, ctype, body = await self._route(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, path: str) -> tuple[str, str, bytes]:
        js = "application/json"
        if path == "/health":
            return "200 OK", js, b'{"status":"ok"}'
        if path == "/ready":
            try:
                issues = await self._ready()
            except Exception as exc:  # a failing check is itself the issue to report
                issues = {"ready_check": f"{type(exc).__name__}: {exc}"}
            if issues:
                body = msgspec.json.encode({"status": "not ready", "issues": issues})
                return "503 Service Unavailable", js, body
            return "200 OK", js, b'{"status":"ready"}'
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/info":
            return "200 OK", js, msgspec.json.encode(self._info)
        body = msgspec.json.encode(
            {"detail": f"no such path {path!r}; try /health, /ready, /metrics"}
        )
        return "404 Not Found", js, body
