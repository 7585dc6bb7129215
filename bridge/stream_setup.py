"""Create or update (idempotently) the JetStream objects the bridge writes into.

- The stream (``OFA_ASSETS``) storing ``ofa.asset.<uuid>.<id>``, with RePublish to the live
  subjects ``asset.<uuid>.<id>`` so live messages carry ``Nats-Sequence``/``Nats-Last-Sequence``.
- The ``asset_state`` KV bucket, fed server-side: its stream *sources* the asset stream with a
  subject transform ``ofa.asset.*.*`` -> ``$KV.asset_state.<uuid>.<id>`` and keeps one message
  per subject, so the bucket holds the latest record bytes of each data item without the bridge
  writing twice (and it stays consistent with the stream order).
- The ``ofa_bridges`` KV bucket (worker registry, entries expire after a TTL).
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from bridge.settings import BridgeSettings
from ofa_contract.layout import Layout
from ofa_contract.runtime import get_logger

log = get_logger("bridge", __name__)


def _storage(s: BridgeSettings) -> StorageType:
    return StorageType.FILE if s.storage == "file" else StorageType.MEMORY


def asset_stream_config(layout: Layout, s: BridgeSettings) -> StreamConfig:
    """The stream's configuration from the settings (documented limits, RePublish)."""
    return StreamConfig(
        name=layout.stream,
        description="OpenFactory asset events bridged from Kafka (ofa-serving)",
        subjects=[layout.stream_subjects()],
        storage=_storage(s),
        num_replicas=s.replicas,
        max_age=s.max_age_s if s.max_age_s > 0 else None,
        max_bytes=s.max_bytes,
        max_msgs_per_subject=s.max_msgs_per_subject,
        discard=DiscardPolicy.OLD,
        duplicate_window=s.duplicate_window_s,
        allow_direct=True,
        republish=RePublish(src=layout.stream_subjects(), dest=layout.live_republish()),
    )


def state_stream_config(layout: Layout, s: BridgeSettings) -> StreamConfig:
    """The ``asset_state`` KV bucket's stream, sourcing the asset stream server-side."""
    bucket = layout.state_bucket
    return StreamConfig(
        name=f"KV_{bucket}",
        description="latest record per (asset, data item), sourced from the asset stream",
        subjects=[f"$KV.{bucket}.>"],
        storage=_storage(s),
        num_replicas=s.replicas,
        max_msgs_per_subject=1,
        max_msgs=-1,
        max_consumers=-1,
        discard=DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        duplicate_window=120.0,
        sources=[
            StreamSource(
                name=layout.stream,
                subject_transforms=[
                    SubjectTransform(
                        src=f"{layout.stream_subject_prefix}.*.*",
                        dest=f"$KV.{bucket}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}",
                    )
                ],
            )
        ],
    )


async def _upsert(js: JetStreamContext, cfg: StreamConfig) -> None:
    try:
        await js.stream_info(cfg.name or "")
    except NotFoundError:
        await js.add_stream(cfg)
        log.info("created stream %s", cfg.name)
        return
    await js.update_stream(cfg)
    log.info("stream %s is up to date", cfg.name)


async def ensure_streams(js: JetStreamContext, layout: Layout, s: BridgeSettings) -> None:
    """Create or update the asset stream and the ``asset_state`` bucket (idempotent)."""
    await _upsert(js, asset_stream_config(layout, s))
    await _upsert(js, state_stream_config(layout, s))


async def ensure_registry(js: JetStreamContext, layout: Layout, s: BridgeSettings) -> KeyValue:
    """Open (creating if missing) the worker registry bucket."""
    try:
        return await js.key_value(layout.bridges_bucket)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(
            KeyValueConfig(
                bucket=layout.bridges_bucket,
                ttl=s.registry_ttl_s,
                storage=_storage(s),
                replicas=s.replicas,
            )
        )
