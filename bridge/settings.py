"""Settings of a bridge worker: environment variables ``BRIDGE_<FIELD>`` (plus CommonSettings)."""

from __future__ import annotations

import os
import socket

import msgspec

from ofa_contract import streams
from ofa_contract.naming import GROUP_TOPIC_PREFIX


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class BridgeSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Every knob of one bridge worker; all workers of a pool share these values."""

    #: Kafka consumer group that ALL workers of the pool join.
    consumer_group: str = "ofa-bridge"
    #: Prefix of the derived per-group topics; the worker subscribes to ``^<prefix>.*``.
    topic_prefix: str = GROUP_TOPIC_PREFIX
    #: How often (ms) Kafka metadata is refreshed, i.e. how fast a new group topic is seen.
    metadata_refresh_ms: int = 3000
    #: Kafka group session timeout (ms): how long before a silent (killed) worker's groups move.
    session_timeout_ms: int = 10000
    #: Kafka group heartbeat interval (ms).
    heartbeat_interval_ms: int = 2000
    #: Most records taken from Kafka per poll.
    max_poll_records: int = 2000
    #: How often (ms) acknowledged offsets are committed to Kafka.
    commit_interval_ms: int = 200
    #: Most JetStream publishes awaiting their ack at once (the pipelining window).
    max_in_flight: int = 1024
    #: Seconds to wait for a JetStream ack before the connection is reset and everything
    #: un-acked is sent again (with the same Nats-Msg-Id, so the stream drops duplicates).
    ack_timeout_s: float = 10.0
    #: Reconnect back-off: first and largest delay (seconds) between NATS connection attempts.
    retry_backoff_s: float = 0.2
    retry_backoff_max_s: float = 5.0
    #: On a rebalance, how long (seconds) to wait for in-flight publishes before releasing.
    revoke_drain_timeout_s: float = 30.0

    #: JetStream stream that stores every record.
    stream_name: str = streams.STREAM_NAME
    #: Subjects stored by the stream: ``<prefix>.<uuid>.<id>``.
    stream_subject_prefix: str = streams.STREAM_SUBJECT_PREFIX
    #: Live subjects the stream republishes to: ``<prefix>.<uuid>.<id>``.
    live_subject_prefix: str = streams.LIVE_SUBJECT_PREFIX
    #: Stream history limits: age (seconds, 0 = unlimited), bytes (-1 = unlimited; JetStream
    #: reserves this much of the server's storage) and messages kept per subject (-1 = unlimited).
    max_age_s: float = 24 * 3600.0
    max_bytes: int = 1024**3
    max_msgs_per_subject: int = 10000
    #: JetStream de-duplication window (seconds); must outlast any rebalance or restart.
    duplicate_window_s: float = 600.0
    #: Replicas of the stream and KV buckets (1 for a single server, 3 for a cluster).
    replicas: int = 1
    #: "file" or "memory".
    storage: str = "file"

    #: KV bucket of the latest value per (asset, data item), fed by the stream server-side.
    state_bucket: str = streams.ASSET_STATE_BUCKET
    #: KV bucket where workers register the groups they own; entries expire after the TTL.
    bridges_bucket: str = streams.BRIDGES_BUCKET
    registry_ttl_s: float = 30.0
    heartbeat_s: float = 5.0

    #: Also publish every stored record as OpenFactory's forwarder does (core NATS, subject
    #: ``<KEY>.<ID>``, OpenFactory's payload), after JetStream stored it; ``false`` turns it off.
    openfactory_subjects: bool = True

    #: This worker's id (registry key, logs); defaults to ``<hostname>-<pid>``.
    worker_id: str = msgspec.field(default_factory=_default_worker_id)
    #: Operations port for /health, /ready, /metrics (0 = pick a free port).
    ops_host: str = "127.0.0.1"
    ops_port: int = 8061

    def __post_init__(self) -> None:
        if self.storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', got {self.storage!r}")
        if self.duplicate_window_s <= 0:
            raise ValueError("duplicate_window_s must be > 0")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if not self.topic_prefix:
            raise ValueError("topic_prefix must not be empty")
