"""The router's HTTP API (Litestar): the public entry point OpenFactory clients point at.

- ``GET /asset_stream`` sends the client to an edge serving the asset's group (307), or streams
  the edge's SSE bytes through unchanged (proxy mode).
- ``GET /asset_state`` answers in OpenFactory's exact shapes from the asset_state KV bucket.
- ``GET /asset/{asset_uuid}`` is OpenFactory's asset router (where to subscribe with core NATS),
  also served alone on ``ROUTER_ASSET_ROUTER_PORT`` when set (:func:`create_asset_router_app`).
- ``GET /groups``, the shared ops routes (``/health``, ``/ready``, ``/info``, ``/metrics``),
  OpenAPI at ``/schema``,
  and the live dashboard at ``/``.

Every 4xx/5xx answer is JSON with a ``detail``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
import httpx
import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.params import QueryParameter
from litestar.response import Redirect, Stream
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ofa_contract import __version__
from ofa_contract.asset_state import NOT_FOUND_ASSET, NOT_FOUND_ITEM, AssetState, ItemState
from ofa_contract.auth import AuthError, TokenSource, find_token
from ofa_contract.naming import decode_token, encode_token
from ofa_contract.registry import EdgeEntry
from ofa_contract.runtime import cancel_and_wait, get_logger, ops_routes
from ofa_contract.runtime.serve import cors_config
from router.asset_router import asset_route
from router.service import RouterService

log = get_logger("router", __name__)

STATIC = Path(__file__).parent / "static"
GROUP_NOT_FOUND = "Asset group not found"
#: Request headers passed on to the edge in proxy mode.
FORWARDED_HEADERS = ("last-event-id", "authorization", "accept", "cookie", "user-agent")
#: Routes with their own metric label; anything else is counted as "other".
KNOWN_ROUTES = frozenset(
    (
        "/",
        "/asset_stream",
        "/asset_state",
        "/groups",
        "/api/assets",
        "/health",
        "/ready",
        "/info",
        "/metrics",
    )
)
#: Metric label of ``/asset/{asset_uuid}`` (one label for every uuid keeps the label set bounded).
ASSET_ROUTE_LABEL = "/asset/{asset_uuid}"
#: Sent in proxy mode when the edge has been quiet for ``ROUTER_PROXY_KEEPALIVE_S``.
KEEPALIVE = b": keepalive\n\n"


def _json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"detail": detail}, status_code=status, headers=headers)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    body: dict[str, Any] = {"detail": exc.detail}
    if exc.extra:
        body["errors"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _auth_error(request: Request[Any, Any, Any], exc: AuthError) -> Response[Any]:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json_error(exc.status, exc.detail, headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception(
        "unhandled error on %s", request.url.path, exc_info=exc, extra={"path": request.url.path}
    )
    return _json_error(500, f"Internal server error: {type(exc).__name__}")


def _service(state: State) -> RouterService:
    svc: RouterService = state.service
    return svc


def _token(svc: RouterService, request: Request[Any, Any, Any]) -> tuple[str | None, TokenSource]:
    """(token, where it came from) when auth is on, else (None, "")."""
    if not svc.auth.enabled:
        return None, ""
    return find_token(request, svc.auth_settings.token_cookie)


def _asset_param(asset_uuid: str | None) -> str:
    if not asset_uuid:
        raise HTTPException(status_code=400, detail="Missing required query parameter: asset_uuid")
    return asset_uuid


def _edge_base(svc: RouterService, edge: EdgeEntry) -> str:
    return (svc.settings.redirect_base or edge.url).rstrip("/")


def edge_stream_url(base: str, group: str, query: str) -> str:
    """The edge's stream URL. The group travels as ``encode_token(group)`` (``[A-Za-z0-9_-]+``,
    plain names unchanged) because a free-text name may hold ``/``, which no HTTP stack keeps
    inside one path segment once decoded; the edge decodes it with ``decode_token``."""
    return f"{base}/group/{encode_token(group)}/asset_stream?{query}"


def _no_edge(svc: RouterService, group: str) -> Response[Any]:
    svc.metrics.no_edge.inc()
    return _json_error(
        503,
        f"No live edge serves group {group!r}; retry shortly",
        {"Retry-After": str(svc.settings.retry_after_s)},
    )


# ---------------------------------------------------------------------- streams


@get("/asset_stream", summary="Server-Sent Events of one asset (via an edge)", tags=["assets"])
async def asset_stream(
    request: Request[Any, Any, Any],
    state: State,
    asset_uuid: Annotated[str | None, QueryParameter(description="The asset's uuid")] = None,
    # Declared for the OpenAPI document only: the whole query string goes to the edge as is.
    item_id: Annotated[
        str | None,
        QueryParameter(name="id", description="Only this data item (case-insensitive key match)"),
    ] = None,
) -> Response[Any]:
    """Resolve the asset's group, pick the least loaded live edge serving it, and redirect
    (307, all query parameters kept) or proxy the SSE stream."""
    svc = _service(state)
    asset = _asset_param(asset_uuid)
    token, source = _token(svc, request)
    group = svc.index.group_of(asset)
    svc.auth.check(token, asset, group)
    if group is None:
        return _json_error(404, GROUP_NOT_FOUND)
    query = request.scope["query_string"].decode("latin-1")
    if svc.settings.mode == "proxy":
        return await _proxy(svc, request, group, query)
    edge = svc.edges.pick(group)
    if edge is None:
        return _no_edge(svc, group)
    if token is not None and source != "query":
        # The token came in a header or cookie, which the redirected request may not carry.
        extra = urlencode({"token": token})
        query = f"{query}&{extra}" if query else extra
    svc.metrics.redirects.labels(group).inc()
    return Redirect(
        edge_stream_url(_edge_base(svc, edge), group, query),
        status_code=307,
        headers={"Cache-Control": "no-store"},
    )


async def _proxy(
    svc: RouterService, request: Request[Any, Any, Any], group: str, query: str
) -> Response[Any]:
    """Stream the edge's answer through, bytes unchanged, trying the next edge on failure."""
    assert svc.http is not None
    headers = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k)) is not None}
    headers["x-forwarded-for"] = request.client.host if request.client else ""
    upstream: httpx.Response | None = None
    for key, edge in svc.edges.candidates(group):
        url = edge_stream_url(edge.url.rstrip("/"), group, query)
        try:
            upstream = await svc.http.send(
                svc.http.build_request("GET", url, headers=headers), stream=True
            )
        except httpx.TransportError as exc:
            svc.metrics.edge_failures.inc()
            log.warning(
                "edge %s unreachable (%s); trying the next one",
                edge.id,
                exc,
                extra={"edge": edge.id, "error": str(exc)},
            )
            continue
        svc.edges.note_pick(key)
        break
    if upstream is None:
        return _no_edge(svc, group)
    if upstream.status_code != 200:
        body = await upstream.aread()
        await upstream.aclose()
        passed = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() in ("retry-after", "www-authenticate")
        }
        return Response(
            body,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", MediaType.JSON),
            headers=passed,
        )
    svc.metrics.proxied.labels(group).inc()
    return Stream(
        _pass_through(svc, upstream),
        status_code=200,
        media_type=upstream.headers.get("content-type", "text/event-stream"),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _pass_through(svc: RouterService, upstream: httpx.Response) -> AsyncIterator[bytes]:
    """Yield the edge's bytes as they arrive; each chunk is flushed to the client at once."""
    svc.metrics.proxy_open.inc()
    try:
        async for chunk in _with_keepalive(upstream.aiter_raw(), svc.settings.proxy_keepalive_s):
            svc.metrics.proxy_bytes.inc(len(chunk))
            yield chunk
    except httpx.TransportError as exc:
        # The edge went away: end the response; the client reconnects with Last-Event-ID and is
        # sent to a live edge.
        log.info("edge stream ended: %s", exc, extra={"error": str(exc)})
    finally:
        svc.metrics.proxy_open.dec()
        with anyio.CancelScope(shield=True):
            await upstream.aclose()


def _at_event_end(tail: bytes) -> bool:
    """True when the bytes sent so far end an SSE event (a comment may only go there)."""
    return not tail or tail.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))


async def _with_keepalive(source: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """``source``'s chunks, plus :data:`KEEPALIVE` after ``interval`` seconds of silence, only
    between events. The edge is read by a task feeding a small queue, because cancelling a read
    of the edge's response on a timeout would break that response; the queue keeps
    back-pressure (a slow client still slows the edge's socket, which cuts it)."""
    if interval <= 0:
        async for chunk in source:
            yield chunk
        return
    queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(maxsize=8)

    async def pump() -> None:
        try:
            async for chunk in source:
                await queue.put(chunk)
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put(exc)

    task = asyncio.create_task(pump(), name="proxy-pump")
    tail = b""
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), interval)
            except TimeoutError:
                if _at_event_end(tail):
                    yield KEEPALIVE
                continue
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            tail = (tail + item)[-4:]
            yield item
    finally:
        await cancel_and_wait(task)


# ---------------------------------------------------------------------- state


@get("/asset_state", summary="Latest values of an asset (OpenFactory shapes)", tags=["assets"])
async def asset_state(
    request: Request[Any, Any, Any],
    state: State,
    asset_uuid: Annotated[str | None, QueryParameter(description="The asset's uuid")] = None,
    item_id: Annotated[str | None, QueryParameter(name="id", description="One data item")] = None,
) -> Response[Any]:
    """``{asset_uuid, id, value, type, tag, timestamp}`` for one data item, or
    ``{asset_uuid, dataItems: [...]}`` for the whole asset."""
    svc = _service(state)
    asset = _asset_param(asset_uuid)
    token, _ = _token(svc, request)
    svc.auth.check(token, asset, svc.index.group_of(asset))
    try:
        reader = await svc.state_reader()
    except RuntimeError as exc:
        return _json_error(503, str(exc), {"Retry-After": str(svc.settings.retry_after_s)})
    started = time.perf_counter()
    result: ItemState | AssetState | None
    if item_id:
        result = await reader.item(asset, item_id)
        detail = NOT_FOUND_ITEM
    else:
        result = await reader.asset(asset)
        detail = NOT_FOUND_ASSET
    svc.metrics.state_latency.observe(time.perf_counter() - started)
    if result is None:
        return _json_error(404, detail)
    return Response(msgspec.to_builtins(result))


# ---------------------------------------------------------------------- groups and dashboard


@get("/groups", summary="Groups, their topics, bridge owners and edges", tags=["operations"])
async def groups(state: State) -> dict[str, Any]:
    """Every known group (announced or holding an asset) with its derived topic, the bridge
    worker that owns it and the live edges serving it."""
    svc = _service(state)
    announced = svc.index.groups()
    counts: dict[str, int] = {}
    for g in svc.index.assets().values():
        counts[g] = counts.get(g, 0) + 1
    owners: dict[str, list[str]] = {}
    for b in svc.bridges.live().values():
        for g in b.groups:
            owners.setdefault(g, []).append(b.id)
    out = []
    for name in sorted(set(announced) | set(counts)):
        ann = announced.get(name)
        try:
            topic = ann.topic if ann else svc.layout.group_topic(name)
        except ValueError:
            topic = None
        out.append(
            {
                "group": name,
                "topic": topic,
                "partitions": ann.partitions if ann else None,
                "announced": ann is not None,
                "assets": counts.get(name, 0),
                "bridge": sorted(owners.get(name, [])),
                "edges": svc.edges.serving(name),
            }
        )
    return {"groups": out}


@get("/api/assets", summary="Assets by workcenter, for the dashboard", tags=["dashboard"])
async def api_assets(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """Assets grouped by their grouping attribute value (from asset_state), falling back to the
    group the splitter assigned."""
    svc = _service(state)
    token, _ = _token(svc, request)
    if svc.auth.enabled and not token:
        raise AuthError(
            401, "authentication required: send a JWT (Authorization: Bearer, token=, cookie)"
        )
    attr = svc.settings.group_attribute
    by_asset: dict[str, str] = dict(svc.index.assets())
    try:
        reader = await svc.state_reader()
        # Keys are Layout.state_key(asset, item): every asset's item ``attr`` is "*.<item>".
        for key, raw in await reader.raw_items(f"*.{encode_token(attr)}"):
            asset = decode_token(key.split(".", 1)[0])
            try:
                value = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                continue
            wc = value.get("VALUE", value.get("value")) if isinstance(value, dict) else None
            if isinstance(wc, str) and wc:
                by_asset[asset] = wc
    except RuntimeError as exc:
        log.info("dashboard listing without asset_state: %s", exc, extra={"error": str(exc)})
    workcenters: dict[str, list[str]] = {}
    for asset in sorted(by_asset)[: svc.settings.dashboard_max_assets]:
        try:
            svc.auth.check(token, asset, svc.index.group_of(asset))
        except AuthError as exc:
            if exc.status == 401:
                raise
            continue
        workcenters.setdefault(by_asset[asset], []).append(asset)
    return Response({"group_attribute": attr, "workcenters": workcenters})


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def dashboard() -> Response[bytes]:
    """The live dashboard (plain HTML + JS)."""
    return Response((STATIC / "index.html").read_bytes(), media_type=MediaType.HTML)


# ---------------------------------------------------------------------- operations


def _route_label(path: str) -> str:
    if path in KNOWN_ROUTES:
        return path
    return ASSET_ROUTE_LABEL if path.startswith("/asset/") else "other"


def _count_requests(svc: RouterService) -> Any:
    """ASGI middleware counting responses by route and status (bounded label values)."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            route = _route_label(scope["path"])

            async def counting_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    svc.metrics.requests.labels(route, str(message["status"])).inc()
                await send(message)

            await app(scope, receive, counting_send)

        return middleware

    return factory


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: _http_exception,
    AuthError: _auth_error,
    Exception: _unexpected,
}


def _ops(svc: RouterService) -> Any:
    """``/health``, ``/ready``, ``/metrics``, ``/info``: the answers every process gives."""
    return ops_routes(svc.ready_issues, svc.metrics.registry, svc.info)


def create_app(svc: RouterService, *, manage_service: bool = True) -> Litestar:
    """The Litestar app; with ``manage_service`` its lifespan starts and stops ``svc``."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if manage_service:
            await svc.start()
        try:
            yield
        finally:
            if manage_service:
                await svc.stop()

    return Litestar(
        route_handlers=[
            asset_stream,
            asset_state,
            asset_route,
            groups,
            api_assets,
            dashboard,
            _ops(svc),
        ],
        state=State({"service": svc}),
        lifespan=[lifespan],
        middleware=[_count_requests(svc)],
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=cors_config(svc.settings.cors_origins),
        openapi_config=OpenAPIConfig(
            title="ofa-serving router",
            version=__version__,
            path="/schema",
            description="Public HTTP entry of the OpenFactory asset serving layer.",
        ),
    )


def create_asset_router_app(svc: RouterService) -> Litestar:
    """OpenFactory's asset router alone (``/asset/{uuid}`` and the ops routes), for the second
    listener on ``ROUTER_ASSET_ROUTER_PORT``; ``svc`` is run by the main app's lifespan."""
    return Litestar(
        route_handlers=[asset_route, _ops(svc)],
        state=State({"service": svc}),
        middleware=[_count_requests(svc)],
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=cors_config(svc.settings.cors_origins),
        openapi_config=None,
    )
