"""Edge settings, read from ``EDGE_*`` environment variables.

The names the edge shares with the other processes (stream, subject prefixes, buckets) are the
:class:`~ofa_contract.layout.Layout`'s, the JWT settings :class:`~ofa_contract.auth.AuthSettings`
(``JWT_*``); the old ``EDGE_STREAM``, ``EDGE_JWT_SECRET``... still work as deprecated aliases.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from ofa_contract.settings import (
    HttpServiceSettings,
    NonNegativeFloat,
    NonNegativeInt,
    NonNegativeSeconds,
    Port,
    PositiveInt,
    Seconds,
)


class EdgeSettings(HttpServiceSettings, kw_only=True, frozen=True):
    """Settings of one edge node (environment prefix ``EDGE_``; ``EDGE_HOST``, ``EDGE_PORT``,
    ``EDGE_CORS_ORIGINS``... are the :class:`~ofa_contract.settings.HttpServiceSettings`')."""

    env_prefix: ClassVar[str] = "EDGE_"

    #: TCP port; 0 picks a free port.
    port: Port = 8100
    #: URL clients reach this node at, published in the registry; default http://host:port.
    public_url: str = ""
    #: Registry id of this node; default ``<hostname>-<pid>``.
    id: str = ""
    #: Groups this node serves (fnmatch patterns), published in the registry; ["*"] = all.
    groups: list[str] = msgspec.field(default_factory=lambda: ["*"])
    #: Seconds between registry heartbeats.
    heartbeat_s: Seconds = 2.0
    #: TTL of registry entries when this node creates the bucket (entries of a dead node vanish).
    registry_ttl_s: Seconds = 10.0
    #: Replicas of the registry bucket when this node creates it (1 for a single server, 3 for
    #: a cluster: with one replica the bucket, and every edge's heartbeat, dies with its node).
    registry_replicas: PositiveInt = 1
    #: ``retry:`` sent to clients: EventSource's reconnect delay in milliseconds.
    retry_ms: NonNegativeInt = 2000
    #: Seconds between ``: ping`` comments on an idle stream.
    ping_interval_s: Seconds = 15.0
    #: Bytes a client may have queued, besides its largest queued frame (a record may be larger),
    #: before it is cut off as too slow.
    client_queue_bytes: PositiveInt = 256 * 1024
    #: Seconds a cut or closing client gets to take its final comment before the socket is
    #: dropped (a client that stopped reading would otherwise hold its connection forever).
    close_grace_s: NonNegativeSeconds = 5.0
    #: Open streams this node accepts; beyond it new streams get 503 with Retry-After.
    max_connections: PositiveInt = 20000
    #: Largest total size of a stream request's headers (bytes); beyond it 431 JSON. The HTTP
    #: parser (httptools) has no limit of its own, and every open stream keeps its headers.
    max_header_bytes: PositiveInt = 16384
    #: New streams per second this node accepts (token bucket, burst = 1 s); 0 = no limit.
    max_new_connections_per_s: NonNegativeFloat = 2000.0
    #: Seconds a history replay may wait for the next message before giving up.
    history_timeout_s: Seconds = 10.0
    #: Freeze start-up objects out of the garbage collector (cuts the p99 tail).
    gc_freeze: bool = True
