"""The operations endpoints every process serves: ``/health``, ``/ready``, ``/metrics``, ``/info``.

One function, :func:`ops_answer`, computes every answer. :class:`OpsServer` serves it on a small
dependency-free port (splitter, bridge: processes that serve no other HTTP); :func:`ops_routes`
mounts the same answers in a Litestar app (edge, router).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from litestar import Router

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
        answer = await ops_answer(path, self._ready, self._registry, self._info)
        return f"{answer.status} {_REASONS[answer.status]}", answer.content_type, answer.body


_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}
#: The paths :func:`ops_answer` serves.
OPS_PATHS = ("/health", "/ready", "/metrics", "/info")


class OpsAnswer(msgspec.Struct, frozen=True):
    """One ops response: status code, content type, body."""

    status: int
    content_type: str
    body: bytes


async def ready_issues(ready: ReadyCheck) -> dict[str, str]:
    """Run a readiness check; an exception is itself the issue to report."""
    try:
        return await ready()
    except Exception as exc:  # a failing check is itself the issue to report
        return {"ready_check": f"{type(exc).__name__}: {exc}"}


async def ops_answer(
    path: str,
    ready: ReadyCheck,
    registry: CollectorRegistry = REGISTRY,
    info: dict[str, Any] | None = None,
) -> OpsAnswer:
    """The answer to ``GET <path>`` for every ops path (404 JSON for anything else).

    ``/ready`` is 200 ``{"status":"ready"}`` or 503 ``{"status":"not ready","issues":{...}}``.
    """
    js = "application/json"
    if path == "/health":
        return OpsAnswer(200, js, b'{"status":"ok"}')
    if path == "/ready":
        issues = await ready_issues(ready)
        if issues:
            return OpsAnswer(
                503, js, msgspec.json.encode({"status": "not ready", "issues": issues})
            )
        return OpsAnswer(200, js, b'{"status":"ready"}')
    if path == "/metrics":
        return OpsAnswer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
    if path == "/info":
        return OpsAnswer(200, js, msgspec.json.encode(info or {}))
    detail = f"no such path {path!r}; try {', '.join(OPS_PATHS)}"
    return OpsAnswer(404, js, msgspec.json.encode({"detail": detail}))


InfoSource = dict[str, Any] | Callable[[], dict[str, Any]] | None


def ops_routes(
    ready: ReadyCheck,
    registry: CollectorRegistry = REGISTRY,
    info: InfoSource = None,
    *,
    path: str = "/",
) -> Router:
    """A Litestar router serving ``/health``, ``/ready``, ``/metrics`` and ``/info`` with the
    same answers as :class:`OpsServer` (``info`` may be a callable, read on each request).

    Litestar is imported here, not at module level: the splitter and bridge do not need it.
    """
    from litestar import Router

    return Router(
        path=path, route_handlers=[_ops_handler(p, ready, registry, info) for p in OPS_PATHS]
    )


def _ops_handler(
    ops_path: str, ready: ReadyCheck, registry: CollectorRegistry, info: InfoSource
) -> Any:
    from litestar import Response, get

    async def handler() -> Response[bytes]:
        doc = info() if callable(info) else info
        answer = await ops_answer(ops_path, ready, registry, doc)
        return Response(
            content=answer.body, status_code=answer.status, media_type=answer.content_type
        )

    name = "ops" + ops_path.replace("/", "_")
    # The annotations are strings (PEP 563) and Response is imported here: tell Litestar.
    return get(
        ops_path, name=name, include_in_schema=False, signature_namespace={"Response": Response}
    )(handler)
