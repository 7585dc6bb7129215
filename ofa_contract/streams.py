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

from ofa_contract.layout import DEFAULT_LAYOUT, Layout, NatsHeaders

# Deprecated aliases of the :class:`Layout` defaults and :class:`NatsHeaders`; kept until every
# importer has moved to :class:`ofa_contract.layout.Layout`.
STREAM_NAME = DEFAULT_LAYOUT.stream
STREAM_SUBJECT_PREFIX = DEFAULT_LAYOUT.stream_subject_prefix
LIVE_SUBJECT_PREFIX = DEFAULT_LAYOUT.live_subject_prefix
ASSET_STATE_BUCKET = DEFAULT_LAYOUT.state_bucket
EDGES_BUCKET = DEFAULT_LAYOUT.edges_bucket
BRIDGES_BUCKET = DEFAULT_LAYOUT.bridges_bucket

H_MSG_ID = NatsHeaders.MSG_ID
H_ASSET = NatsHeaders.ASSET
H_ITEM = NatsHeaders.ITEM
H_GROUP = NatsHeaders.GROUP
H_KAFKA_TS = NatsHeaders.KAFKA_TS
H_STREAM = NatsHeaders.STREAM
H_SUBJECT = NatsHeaders.SUBJECT
H_SEQUENCE = NatsHeaders.SEQUENCE
H_LAST_SEQUENCE = NatsHeaders.LAST_SEQUENCE


def stream_subject(asset_uuid: str, item_id: str) -> str:
    """Deprecated: :meth:`Layout.stream_subject` of the default layout."""
    return DEFAULT_LAYOUT.stream_subject(asset_uuid, item_id)


def stream_filter(asset_uuid: str, item_id: str | None = None) -> str:
    """Deprecated: :meth:`Layout.stream_filter` of the default layout."""
    return DEFAULT_LAYOUT.stream_filter(asset_uuid, item_id)


def live_subject(asset_uuid: str, item_id: str | None = None) -> str:
    """Deprecated: :meth:`Layout.live_subject` / :meth:`Layout.live_filter` (without item)."""
    if item_id:
        return DEFAULT_LAYOUT.live_subject(asset_uuid, item_id)
    return DEFAULT_LAYOUT.live_filter(asset_uuid)


state_key = Layout.state_key
msg_id = Layout.msg_id


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
