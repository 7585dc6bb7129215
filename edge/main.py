"""`ofa-serving edge`: run one SSE edge node (uvicorn + the Litestar app)."""

from __future__ import annotations

import uvicorn
from litestar import Litestar

from edge.app import create_app
from edge.node import EdgeNode
from edge.settings import EdgeSettings
from edge.transport import TransportCapture
from ofa_contract.auth import AuthSettings
from ofa_contract.layout import Layout
from ofa_contract.runtime.serve import build_server as build_uvicorn
from ofa_contract.runtime.serve import run_uvicorn
from ofa_contract.settings import CommonSettings, from_env, settings_parser, with_listen_args

#: uvicorn options of an edge: a burst of reconnecting clients (an edge died) must not find the
#: listen queue full; idle keep-alive connections are not worth holding.
_UVICORN = {"backlog": 4096, "timeout_keep_alive": 5}


def node_of(app: Litestar) -> EdgeNode:
    """The node of an app made by :func:`edge.app.create_app`."""
    node: EdgeNode = app.state.edge
    return node


def build_server(
    settings: EdgeSettings,
    common: CommonSettings,
    layout: Layout | None = None,
    auth: AuthSettings | None = None,
) -> tuple[uvicorn.Server, EdgeNode]:
    """A server for one edge and its node (tests run it in-process with ``serve``)."""
    app = create_app(settings, common, layout or Layout(), auth)
    server = build_uvicorn(
        TransportCapture(app),
        settings.host,
        settings.port,
        grace=settings.shutdown_grace_s,
        **_UVICORN,
    )
    return server, node_of(app)


def main(argv: list[str]) -> int:
    """Entry point of `ofa-serving edge`."""
    parser = settings_parser(
        "ofa-serving edge", EdgeSettings, "Run one SSE edge node.", listen=True
    )
    settings = with_listen_args(from_env(EdgeSettings), parser.parse_args(argv))
    app = create_app(settings, from_env(CommonSettings), Layout.from_env(), from_env(AuthSettings))
    return run_uvicorn(
        TransportCapture(app),
        settings.host,
        settings.port,
        grace=settings.shutdown_grace_s,
        # Tell every SSE client to reconnect (EventSource resumes on another edge) before
        # uvicorn stops accepting and drains.
        on_stop=node_of(app).begin_shutdown,
        **_UVICORN,
    )
