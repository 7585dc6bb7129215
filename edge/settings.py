"""Edge settings, read from ``EDGE_*`` environment variables."""

from __future__ import annotations

import msgspec


class EdgeSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Settings of one edge node (environment prefix ``EDGE_``)."""

    #: Interface to listen on (``EDGE_HOST``).
    host: str = "127.0.0.1"
    #: TCP port (``EDGE_PORT``); 0 picks a free port.
    port: int = 8100
    #: URL clients reach this node at, published in the registry; default http://host:port.
    public_url: str = ""
    #: Registry id of this node; default ``<hostname>-<pid>``.
    id: str = ""
    #: Groups this node serves (fnmatch patterns), published in the registry; ["*"] = all.
    groups: list[str] = msgspec.field(default_factory=lambda: ["*"])
    #: JetStream stream holding the history (written by the bridge).
    stream: str = "OFA_ASSETS"
    #: Subject prefix of the stored messages: ``<prefix>.<uuid>.<id>``.
    stream_subject_prefix: str = "ofa.asset"
    #: Subject prefix of the republished live messages: ``<prefix>.<uuid>.<id>``.
    live_subject_prefix: str = "asset"
    #: KV bucket with the latest record per (asset, data item), for ``snapshot=true``.
    state_bucket: str = "asset_state"
    #: KV bucket of the edge registry.
    edges_bucket: str = "ofa_edges"
    #: Seconds between registry heartbeats.
    heartbeat_s: float = 2.0
    #: TTL of registry entries when this node creates the bucket (entries of a dead node vanish).
    registry_ttl_s: float = 10.0
    #: ``retry:`` sent to clients: EventSource's reconnect delay in milliseconds.
    retry_ms: int = 2000
    #: Seconds between ``: ping`` comments on an idle stream.
    ping_interval_s: float = 15.0
    #: Bytes a client may have queued, besides its largest queued frame (a record may be larger),
    #: before it is cut off as too slow.
    client_queue_bytes: int = 256 * 1024
    #: Seconds a cut or closing client gets to take its final comment before the socket is
    #: dropped (a client that stopped reading would otherwise hold its connection forever).
    close_grace_s: float = 5.0
    #: Open streams this node accepts; beyond it new streams get 503 with Retry-After.
    max_connections: int = 20000
    #: Largest total size of a stream request's headers (bytes); beyond it 431 JSON. The HTTP
    #: parser (httptools) has no limit of its own, and every open stream keeps its headers.
    max_header_bytes: int = 16384
    #: New streams per second this node accepts (token bucket, burst = 1 s); 0 = no limit.
    max_new_connections_per_s: float = 2000.0
    #: Retry-After seconds sent with a 503.
    retry_after_s: int = 2
    #: Origins allowed by CORS (e.g. ["https://dashboards.example"]); empty = CORS off.
    cors_origins: list[str] = msgspec.field(default_factory=list)
    #: HS256 secret; setting it (or ``jwt_public_key``) turns authentication on.
    jwt_secret: str = ""
    #: RS256/ES256 public key (PEM text, or ``@/path/to/key.pem``).
    jwt_public_key: str = ""
    #: Expected ``aud`` claim, if any.
    jwt_audience: str = ""
    #: Expected ``iss`` claim, if any.
    jwt_issuer: str = ""
    #: Cookie that may carry the token (EventSource cannot set headers).
    token_cookie: str = "ofa_token"
    #: Seconds a history replay may wait for the next message before giving up.
    history_timeout_s: float = 10.0
    #: Seconds uvicorn waits for streams to end after SIGTERM.
    shutdown_grace_s: float = 5.0
    #: Freeze start-up objects out of the garbage collector (cuts the p99 tail).
    gc_freeze: bool = True
