"""Settings of the public HTTP router (`ofa-serving router`), read from ``ROUTER_*`` variables.

Shared settings come without a prefix: connections (``KAFKA_BOOTSTRAP_SERVERS``, ``NATS_URL``:
:class:`ofa_contract.settings.CommonSettings`), names of topics and buckets
(:class:`ofa_contract.layout.Layout`; ``ROUTER_CHANGELOG_TOPIC``, ``ROUTER_GROUPS_TOPIC``,
``ROUTER_GROUP_TOPIC_PREFIX``, ``ROUTER_*_BUCKET`` are its deprecated aliases) and JWT auth
(:class:`ofa_contract.auth.AuthSettings`, ``JWT_*``; ``ROUTER_JWT_*`` are deprecated aliases).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from ofa_contract.settings import (
    HttpServiceSettings,
    NonEmptyStr,
    NonNegativeSeconds,
    Port,
    PositiveInt,
    Seconds,
)


class RouterSettings(HttpServiceSettings, kw_only=True, frozen=True):
    """Every field is set by ``ROUTER_<FIELD>`` (e.g. ``ROUTER_MODE=proxy``); ``ROUTER_HOST``,
    ``ROUTER_CORS_ORIGINS``... are the :class:`~ofa_contract.settings.HttpServiceSettings`'."""

    env_prefix: ClassVar[str] = "ROUTER_"

    #: The OpenFactory serving layer listened on 5555; clients keep their URLs.
    port: Port = 5555
    #: ``proxy``: stream the edge's SSE bytes through the router on the client's connection, so
    #: ``curl`` without ``-L`` and clients that do not follow redirects (httpx's default) work.
    #: ``redirect``: answer /asset_stream with 307 to an edge (cheaper: the client talks to the
    #: edge directly, the router carries no stream), for clients that follow redirects.
    mode: Literal["redirect", "proxy"] = "proxy"
    #: When set, redirects go to this base URL (e.g. the nginx in front of the edges) instead of
    #: the URL an edge registered, which may be an address only reachable inside the cluster.
    redirect_base: str = ""
    #: An edge whose registration was not refreshed for this many seconds is considered dead
    #: (edges heartbeat every 2 s; their bucket's TTL is 10 s).
    edge_stale_s: Seconds = 10.0
    #: Same for bridge workers (they heartbeat every 5 s; their bucket's TTL is 30 s).
    bridge_stale_s: Seconds = 30.0
    #: Proxy mode: seconds to connect to an edge before trying the next one.
    proxy_connect_timeout_s: Seconds = 3.0
    #: Proxy mode: after this many seconds without a byte from the edge, send a ``: keepalive``
    #: comment between events, so clients with a short read timeout (httpx: 5 s) stay connected
    #: on a quiet asset (the edge pings every 15 s). 0 turns it off.
    proxy_keepalive_s: NonNegativeSeconds = 3.0
    #: OpenFactory's asset router (``GET /asset/{uuid}``) is always served on ``ROUTER_PORT``;
    #: a port here serves it on a second listener too (OpenFactory's clients default to 8002).
    #: 0 = no second listener.
    asset_router_port: Port = 0
    #: The ``nats_url`` answered by ``/asset/{uuid}``: the address OpenFactory clients must use
    #: to reach NATS (often not the one the router itself uses). Empty = the first server of
    #: ``NATS_URL``.
    asset_nats_url: str = ""
    #: The ``cluster_name`` answered by ``/asset/{uuid}`` (OpenFactory's default deployment names
    #: its one cluster ``C1``, from ``NATS_CLUSTER_C1``).
    asset_cluster_name: NonEmptyStr = "C1"
    #: Seconds a /ready dependency check may take before it counts as failed.
    ready_timeout_s: Seconds = 3.0
    #: The attribute the dashboard groups assets by (the splitter's grouping attribute).
    group_attribute: NonEmptyStr = "workcenter"
    #: Maximum number of assets listed by the dashboard's JSON endpoint.
    dashboard_max_assets: PositiveInt = 2000
