"""The NATS side of the contract: stream, subjects, headers and KV buckets.

The bridge writes this layout and the edge and router read it; keeping it in one place keeps
them in step.

Layout:
- Stream ``OFA_ASSETS`` stores subjects ``ofa.asset.<uuid>.<id>`` (tokens encoded with
  :func:`ofa_contract.naming.encode_token`). Its RePublish sends every stored message on to the
  live subject ``asset.<uuid>.<id>`` with the headers ``Nats-Stream``, ``Nats-Subject``,
  ``Nats-Sequence`` (stream sequence) and ``Nats-Last-Sequence`` (previous sequence of the same
  subject), so live subscribers can see a gap and fill it from the stream.
- KV bucket ``asset_state``: key ``<uuid>.<id>``, value = the latest record's original bytes.
- KV bucket ``ofa_edges``: edge registry (key = edge id, value :class:`EdgeEntry`), entries
  expire when heartbeats stop.
- KV bucket ``ofa_bridges``: which bridge worker owns which groups (value :class:`BridgeEntry`).
"""

from __future__ import annotations

import msgspec

from ofa_contract.naming import encode_token

STREAM_NAME = "OFA_ASSETS"
STREAM_SUBJECT_PREFIX = "ofa.asset"
LIVE_SUBJECT_PREFIX = "asset"
ASSET_STATE_BUCKET = "asset_state"
EDGES_BUCKET = "ofa_edges"
BRIDGES_BUCKET = "ofa_bridges"

# Headers the bridge sets on every message (besides the record's own Kafka headers).
H_MSG_ID = "Nats-Msg-Id"  # "<topic>:<partition>:<offset>": JetStream's de-duplication key
H_ASSET = "Ofa-Asset-Uuid"
H_ITEM = "Ofa-Data-Item"
H_GROUP = "Ofa-Group"
H_KAFKA_TS = "Ofa-Kafka-Timestamp"  # milliseconds since the epoch
# Headers JetStream's RePublish adds to live messages.
H_STREAM = "Nats-Stream"
H_SUBJECT = "Nats-Subject"
H_SEQUENCE = "Nats-Sequence"
H_LAST_SEQUENCE = "Nats-Last-Sequence"


def stream_subject(asset_uuid: str, item_id: str) -> str:
    """The subject a record is stored under: ``ofa.asset.<uuid>.<id>``."""
    return f"{STREAM_SUBJECT_PREFIX}.{encode_token(asset_uuid)}.{encode_token(item_id)}"


def stream_filter(asset_uuid: str, item_id: str | None = None) -> str:
    """Stream filter subject for one asset (every data item) or one data item."""
    tail = encode_token(item_id) if item_id else "*"
    return f"{STREAM_SUBJECT_PREFIX}.{encode_token(asset_uuid)}.{tail}"


def live_subject(asset_uuid: str, item_id: str | None = None) -> str:
    """Live subject (or wildcard, without ``item_id``) of one asset: ``asset.<uuid>.<id>``."""
    tail = encode_token(item_id) if item_id else "*"
    return f"{LIVE_SUBJECT_PREFIX}.{encode_token(asset_uuid)}.{tail}"


def state_key(asset_uuid: str, item_id: str) -> str:
    """Key of the latest value of one data item in the ``asset_state`` bucket."""
    return f"{encode_token(asset_uuid)}.{encode_token(item_id)}"


def msg_id(topic: str, partition: int, offset: int) -> str:
    """The de-duplication id of a Kafka record: ``<topic>:<partition>:<offset>``."""
    return f"{topic}:{partition}:{offset}"


class EdgeEntry(msgspec.Struct, kw_only=True):
    """An edge's registration in the ``ofa_edges`` bucket (heartbeat-refreshed)."""

    id: str
    url: str
    groups: list[str] = msgspec.field(default_factory=lambda: ["*"])
    connections: int = 0
    max_connections: int = 0
    updated_ms: int = 0


class BridgeEntry(msgspec.Struct, kw_only=True):
    """A bridge worker's registration in the ``ofa_bridges`` bucket (heartbeat-refreshed)."""

    id: str
    groups: list[str] = msgspec.field(default_factory=list)
    updated_ms: int = 0
