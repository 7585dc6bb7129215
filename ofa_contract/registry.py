"""Values of the NATS KV registries: which edges serve (``ofa_edges``) and which bridge worker
owns which groups (``ofa_bridges``). Bucket names come from :class:`ofa_contract.layout.Layout`
(``edges_bucket``, ``bridges_bucket``); entries expire when their owner's heartbeats stop.
"""

from __future__ import annotations

import msgspec


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
