"""`/asset_state` in OpenFactory's exact shapes, read from the ``asset_state`` KV bucket.

The bucket holds, under ``<uuid token>.<id token>``, the latest record's original JSON bytes.
One data item is a single KV get; every item of an asset is a KV watch filtered on the subject
``<uuid token>.*`` (the server filters, so the cost follows the asset, not the bucket), read up to
the end-of-initial-values marker and stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from ofa_contract.events import AssetEvent, BadRecord, decode_record
from ofa_contract.naming import encode_token
from ofa_contract.streams import state_key

NOT_FOUND_ITEM = "No data found for the given asset_uuid and id."
NOT_FOUND_ASSET = "No data found for the given asset_uuid."


class DataItem(msgspec.Struct):
    """One element of ``dataItems`` (OpenFactory's field order)."""

    id: str
    value: str | None
    type: str | None
    tag: str | None
    timestamp: str | None


class ItemState(msgspec.Struct):
    """``GET /asset_state?asset_uuid=U&id=D``."""

    asset_uuid: str
    id: str
    value: str | None
    type: str | None
    tag: str | None
    timestamp: str | None


class AssetState(msgspec.Struct):
    """``GET /asset_state?asset_uuid=U``."""

    asset_uuid: str
    dataItems: list[DataItem]  # OpenFactory's field name


def as_text(value: Any) -> str | None:
    """OpenFactory served every value as a string (ksqlDB VARCHAR) or null."""
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _event(asset_uuid: str, raw: bytes) -> AssetEvent | None:
    try:
        return decode_record(asset_uuid.encode(), raw)
    except BadRecord:
        # The bridge only stores records that passed the splitter's contract check; a value
        # that does not decode is skipped rather than failing the whole asset's answer.
        return None


class AssetStateReader:
    """Reads the latest values of an asset from the KV bucket."""

    def __init__(self, kv: KeyValue, watch_timeout: float = 5.0) -> None:
        self.kv = kv
        self.watch_timeout = watch_timeout

    async def item(self, asset_uuid: str, item_id: str) -> ItemState | None:
        """The latest value of one data item, or None when there is none."""
        try:
            entry = await self.kv.get(state_key(asset_uuid, item_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        ev = _event(asset_uuid, entry.value)
        if ev is None:
            return None
        return ItemState(
            asset_uuid=asset_uuid,
            id=ev.id,
            value=as_text(ev.value),
            type=ev.type,
            tag=ev.tag,
            timestamp=ev.timestamp,
        )

    async def raw_items(self, key_filter: str) -> list[tuple[str, bytes]]:
        """(key, value) of every live key matching ``key_filter`` (NATS subject wildcards)."""
        watcher = await self.kv.watch(key_filter, ignore_deletes=True)
        out: list[tuple[str, bytes]] = []
        try:
            async with asyncio.timeout(self.watch_timeout):
                async for entry in watcher:
                    if entry is None:
                        break
                    if entry.value and entry.operation is None:
                        out.append((entry.key, entry.value))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return out

    async def asset(self, asset_uuid: str) -> AssetState | None:
        """Every data item of one asset (sorted by id), or None when the asset has none."""
        items = []
        for _, raw in await self.raw_items(f"{encode_token(asset_uuid)}.*"):
            ev = _event(asset_uuid, raw)
            if ev is not None:
                items.append(
                    DataItem(
                        id=ev.id,
                        value=as_text(ev.value),
                        type=ev.type,
                        tag=ev.tag,
                        timestamp=ev.timestamp,
                    )
                )
        if not items:
            return None
        items.sort(key=lambda d: d.id)
        return AssetState(asset_uuid=asset_uuid, dataItems=items)
