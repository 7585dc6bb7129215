"""The edge's Litestar application: the SSE routes, its OpenAPI document and the shared
operations routes (``/health``, ``/ready``, ``/metrics``, ``/info``).

Handlers are module-level; the :class:`~edge.node.EdgeNode` of the app reaches them by
dependency injection (``node``). SSE bodies are a Litestar ``Stream`` over an async generator of
pre-built bytes: live frames are encoded once per event by the feed (not one
``ServerSentEvent`` object per client, which costs about 2.5x the CPU), and everything queued
for a client leaves in one write.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import Stream

from edge.node import EdgeNode
from edge.openapi import openapi_document
from edge.session import Refusal, StreamRequest, admit, stream_session
from edge.settings import EdgeSettings
from edge.transport import CYCLE_KEY, TRANSPORT_KEY
from ofa_contract import __version__
from ofa_contract.auth import AuthSettings
from ofa_contract.layout import DEFAULT_LAYOUT, Layout
from ofa_contract.naming import decode_token
from ofa_contract.runtime import ops_routes
from ofa_contract.runtime.serve import cors_config
from ofa_contract.settings import CommonSettings

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        content=body, status_code=status, headers=headers, media_type="application/json"
    )


def _refuse(node: EdgeNode, refusal: Refusal) -> Response[Any]:
    node.metrics.rejected.labels(refusal.reason).inc()
    retry = {"Retry-After": str(node.settings.retry_after_s)} if refusal.status == 503 else None
    return _json(refusal.status, {"detail": refusal.detail}, retry)


def _open_stream(
    request: Request[Any, Any, Any], node: EdgeNode, group: str | None
) -> Response[Any]:
    req = StreamRequest.parse(request, node, group)
    if isinstance(req, Refusal):
        return _refuse(node, req)
    refusal = admit(node, req)
    if refusal is not None:
        return _refuse(node, refusal)
    transport = request.scope.get(TRANSPORT_KEY)  # type: ignore[call-overload]
    cycle = request.scope.get(CYCLE_KEY)  # type: ignore[call-overload]
    body = stream_session(node, req, transport, cycle)
    return Stream(body, media_type="text/event-stream", headers=SSE_HEADERS)


def group_name(segment: str) -> str:
    """The group named by a ``/group/<segment>/asset_stream`` path.

    Routers put ``encode_token(group)`` there so that any group name routes (``Halle Süd/2``
    has a slash). A segment that is not an encoded token is taken as the plain name: routers
    before that change sent names unencoded, and plain names encode to themselves anyway.
    """
    try:
        return decode_token(segment)
    except ValueError:
        return segment


@get("/asset_stream")
async def asset_stream(
    request: Request[Any, Any, Any], node: NamedDependency[EdgeNode]
) -> Response[Any]:
    """SSE stream of one asset (or one data item with ``id=``)."""
    return _open_stream(request, node, None)


@get("/group/{group:str}/asset_stream")
async def group_asset_stream(
    request: Request[Any, Any, Any], node: NamedDependency[EdgeNode], group: FromPath[str]
) -> Response[Any]:
    """SSE stream of one asset of ``group`` (the group is used for authorisation)."""
    return _open_stream(request, node, group_name(group))


@get("/schema/openapi.json")
async def openapi() -> Response[Any]:
    """The OpenAPI document of this interface."""
    return _json(200, openapi_document(__version__))


def _node(state: State) -> EdgeNode:
    node: EdgeNode = state.edge
    return node


def create_app(
    settings: EdgeSettings,
    common: CommonSettings,
    layout: Layout = DEFAULT_LAYOUT,
    auth: AuthSettings | None = None,
) -> Litestar:
    """The Litestar app of one edge node (``app.state.edge`` holds its :class:`EdgeNode`)."""
    node = EdgeNode(settings, common, layout, auth)
    ops = ops_routes(node.ready_issues, node.metrics.registry, node.info)
    app = Litestar(
        route_handlers=[asset_stream, group_asset_stream, openapi, ops],
        dependencies={"node": Provide(_node, sync_to_thread=False)},
        on_startup=[node.start],
        on_shutdown=[node.stop],
        cors_config=cors_config(settings.cors_origins),
        openapi_config=None,
        logging_config=None,
    )
    app.state.edge = node
    return app
