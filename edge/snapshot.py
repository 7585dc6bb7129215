"""``snapshot=true``: the asset's current values from the ``asset_state`` KV bucket, shaped like
OpenFactory's ``/asset_state`` answer."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.js.errors import BucketNotFoundError

from ofa_contract.events import BadRecord, decode_record
from ofa_contract.naming import encode_token


def _item(asset_uuid: str, raw: bytes) -> dict[str, Any] | None:
    try:
        ev = decode_record(asset_uuid.encode(), raw)
    except BadRecord:
        return None
    value = ev.value if ev.value is None or isinstance(ev.value, str) else str(ev.value)
    return {"id": ev.id, "value": value, "type": ev.type, "tag": ev.tag, "timestamp": ev.timestamp}


async def asset_state(
    nc: NatsClient, bucket: str, asset_uuid: str, item_id: str | None, timeout: float = 5.0
) -> bytes:
    """JSON of ``{"asset_uuid", "dataItems": [...]}`` (or, with ``item_id``, the single item's
    ``{"asset_uuid", "id", "value", "type", "tag", "timestamp"}``; ``value`` null when unknown)."""
    items: list[dict[str, Any]] = []
    key = encode_token(asset_uuid) + "." + (encode_token(item_id) if item_id else "*")
    with contextlib.suppress(BucketNotFoundError):
        kv = await nc.jetstream().key_value(bucket)
        watcher = await kv.watch(key, ignore_deletes=True, inactive_threshold=5.0)
        try:
            while True:
                entry = await watcher.updates(timeout=timeout)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                if entry.value:
                    item = _item(asset_uuid, entry.value)
                    if item is not None:
                        items.append(item)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
    if item_id is not None:
        found = (
            items[0]
            if items
            else {"id": item_id, "value": None, "type": None, "tag": None, "timestamp": None}
        )
        return msgspec.json.encode({"asset_uuid": asset_uuid, **found})
    return msgspec.json.encode({"asset_uuid": asset_uuid, "dataItems": items})
