"""Settings of a bridge worker: environment variables ``BRIDGE_<FIELD>`` (plus CommonSettings).

The names it reads and writes (derived topics, stream, subjects, KV buckets) come from the
:class:`~ofa_contract.layout.Layout` (``OFA_NAMESPACE``, ``GROUP_TOPIC_PREFIX``,
``STREAM_NAME``...); the old ``BRIDGE_TOPIC_PREFIX``, ``BRIDGE_STREAM_NAME``,
``BRIDGE_STREAM_SUBJECT_PREFIX``, ``BRIDGE_LIVE_SUBJECT_PREFIX``, ``BRIDGE_STATE_BUCKET`` and
``BRIDGE_BRIDGES_BUCKET`` are accepted by the layout as deprecated aliases for one release.
"""

from __future__ import annotations

import os
import socket
from typing import ClassVar, Literal

import msgspec

from ofa_contract.settings import (
    KafkaWorkerSettings,
    NonEmptyStr,
    NonNegativeSeconds,
    Port,
    PositiveInt,
    Seconds,
)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class BridgeSettings(KafkaWorkerSettings, kw_only=True, frozen=True):
    """Every knob of one bridge worker; all workers of a pool share these values."""

    env_prefix: ClassVar[str] = "BRIDGE_"

    #: Kafka consumer group that ALL workers of the pool join.
    consumer_group: NonEmptyStr = "ofa-bridge"
    #: How often (ms) Kafka metadata is refreshed, i.e. how fast a new group topic is seen.
    metadata_refresh_ms: PositiveInt = 3000
    #: Kafka consumer group heartbeat interval (ms).
    heartbeat_interval_ms: PositiveInt = 2000
    #: Most records taken from Kafka per poll.
    max_poll_records: PositiveInt = 2000
    #: How often (ms) acknowledged offsets are committed to Kafka.
    commit_interval_ms: PositiveInt = 200
    #: Most JetStream publishes awaiting their ack at once (the pipelining window).
    max_in_flight: PositiveInt = 1024
    #: Most records held back behind an un-acknowledged record of their asset (memory bound of
    #: a backlog: each holds its record's bytes). Not part of the window, so a catch-up of a few
    #: assets does not keep the others waiting.
    max_held: PositiveInt = 16384
    #: Seconds to wait for a JetStream ack before the connection is reset and everything
    #: un-acked is sent again (with the same Nats-Msg-Id, so the stream drops duplicates).
    ack_timeout_s: Seconds = 10.0
    #: Reconnect back-off: first and largest delay (seconds) between NATS connection attempts.
    retry_backoff_s: Seconds = 0.2
    retry_backoff_max_s: Seconds = 5.0
    #: On a rebalance, how long (seconds) to wait for in-flight publishes before releasing.
    revoke_drain_timeout_s: NonNegativeSeconds = 30.0

    #: Seconds between checks of the owned partitions against the stream (also checked on
    #: every assignment): a record JetStream lost after acknowledging it (unsynced writes lost
    #: in a crash) is found from the Kafka coordinates in Nats-Msg-Id and re-published.
    gap_check_interval_s: Seconds = 30.0

    #: Stream history limits: age (seconds, 0 = unlimited), bytes (-1 = unlimited; JetStream
    #: reserves this much of the server's storage) and messages kept per subject (-1 = unlimited).
    max_age_s: NonNegativeSeconds = 24 * 3600.0
    max_bytes: int = 1024**3
    max_msgs_per_subject: int = 10000
    #: JetStream de-duplication window (seconds); must outlast any rebalance or restart.
    duplicate_window_s: Seconds = 600.0
    #: Largest commit metadata (bytes) carrying a partition's source-offset map (de-duplication
    #: of splitter replays, see bridge/dedupe.py); keep it within the broker's
    #: ``offset.metadata.max.bytes`` (4096 by default). Past it, source partitions are left out.
    dedupe_metadata_max_bytes: PositiveInt = 4000
    #: Replicas of the stream and KV buckets (1 for a single server, 3 for a cluster).
    replicas: PositiveInt = 1
    #: "file" or "memory".
    storage: Literal["file", "memory"] = "file"

    #: Registry entries (KV bucket of the layout's ``bridges_bucket``) expire after this TTL
    #: (seconds) unless the worker's heartbeat (every ``heartbeat_s``) refreshes them.
    registry_ttl_s: Seconds = 30.0
    heartbeat_s: Seconds = 5.0

    #: Also publish every stored record as OpenFactory's forwarder does (core NATS, subject
    #: ``<KEY>.<ID>``, OpenFactory's payload), after JetStream stored it; ``false`` turns it off.
    openfactory_subjects: bool = True

    #: This worker's id (registry key, logs); defaults to ``<hostname>-<pid>``.
    worker_id: NonEmptyStr = msgspec.field(default_factory=_default_worker_id)
    #: Operations HTTP server (/health /ready /metrics); port 0 = pick a free port.
    ops_port: Port = 8061
