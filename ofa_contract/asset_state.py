"""The latest values of an asset, read from the ``asset_state`` KV bucket and shaped like
OpenFactory's ``/asset_state`` answer. One shaping for the router's ``/asset_state`` and the
edge's ``snapshot=true``, so a client sees the same text for the same value on both.

Decisions (OpenFactory served these from ksqlDB, whose VALUE column is text):

- ``value``: a string stays as is; any other JSON value is rendered as JSON text (``true``,
  ``21.5``, ``null`` stays null). Python's ``str`` is never used (it would give ``"True"``).
- ``timestamp``: ``attributes.timestamp`` when it is a string, else ``"UNAVAILABLE"``
  (OpenFactory's ``COALESCE(timestamp, 'UNAVAILABLE')``).
- An unknown data item: the router answers 404 with :data:`NOT_FOUND_ITEM`, an unknown asset 404
  with :data:`NOT_FOUND_ASSET` (OpenFactory's texts). ``snapshot=true`` omits what is unknown:
  an asset-wide snapshot lists only known items (possibly none); a one-item snapshot of an
  unknown item sends no ``asset_state`` event (:func:`snapshot_json` returns None).
- A stored value that does not decode is skipped (the bridge only stores records that passed
  the splitter's contract check, so this is corruption, not a client's error).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from ofa_contract.events import AssetEvent, BadRecord, decode_record
from ofa_contract.layout import Layout

NOT_FOUND_ITEM = "No data found for the given asset_uuid and id."
NOT_FOUND_ASSET = "No data found for the given asset_uuid."
#: ``timestamp`` of an item whose record carries no ``attributes.timestamp``.
NO_TIMESTAMP = "UNAVAILABLE"


class DataItem(msgspec.Struct):
    """One element of ``dataItems`` (OpenFactory's field order)."""

    id: str
    value: str | None
    type: str | None
    tag: str | None
    timestamp: str


class ItemState(msgspec.Struct):
    """``GET /asset_state?asset_uuid=U&id=D`` (and a one-item snapshot)."""

    asset_uuid: str
    id: str
    value: str | None
    type: str | None
    tag: str | None
    timestamp: str


class AssetState(msgspec.Struct):
    """``GET /asset_state?asset_uuid=U`` (and an asset snapshot)."""

    asset_uuid: str
    dataItems: list[DataItem]  # OpenFactory's field name


def as_text(value: Any) -> str | None:
    """A value as OpenFactory served it: a string as is, anything else as JSON text, or null."""
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def data_item(ev: AssetEvent) -> DataItem:
    """The ``dataItems`` element of one decoded record."""
    return DataItem(
        id=ev.id,
        value=as_text(ev.value),
        type=ev.type,
        tag=ev.tag,
        timestamp=ev.timestamp if ev.timestamp is not None else NO_TIMESTAMP,
    )


def item_state(asset_uuid: str, item: DataItem) -> ItemState:
    """The one-item answer for ``item`` of ``asset_uuid``."""
    return ItemState(asset_uuid, item.id, item.value, item.type, item.tag, item.timestamp)


def _event(asset_uuid: str, raw: bytes) -> AssetEvent | None:
    try:
        return decode_record(asset_uuid.encode(), raw)
    except BadRecord:
        return None  # corruption, not the client's fault: skip the item (see module docstring)


class AssetStateReader:
    """Reads the latest values of an asset from the KV bucket.

    One data item is a single KV get; every item of an asset is a KV watch filtered on
    ``<uuid token>.*`` (the server filters, so the cost follows the asset, not the bucket), read
    up to the end-of-initial-values marker and stopped.
    """

    def __init__(self, kv: KeyValue, watch_timeout: float = 5.0) -> None:
        self.kv = kv
        self.watch_timeout = watch_timeout

    async def item(self, asset_uuid: str, item_id: str) -> ItemState | None:
        """The latest value of one data item, or None when there is none."""
        try:
            entry = await self.kv.get(Layout.state_key(asset_uuid, item_id))
        except KeyNotFoundError:
            return None
        ev = _event(asset_uuid, entry.value) if entry.value else None
        return None if ev is None else item_state(asset_uuid, data_item(ev))

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

    async def items(self, asset_uuid: str) -> list[DataItem]:
        """Every known data item of one asset, sorted by id (empty when none)."""
        found = []
        for _, raw in await self.raw_items(Layout.state_filter(asset_uuid)):
            ev = _event(asset_uuid, raw)
            if ev is not None:
                found.append(data_item(ev))
        found.sort(key=lambda d: d.id)
        return found

    async def asset(self, asset_uuid: str) -> AssetState | None:
        """Every data item of one asset, or None when the asset has none (router: 404)."""
        found = await self.items(asset_uuid)
        return AssetState(asset_uuid=asset_uuid, dataItems=found) if found else None


async def open_reader(
    js: JetStreamContext, bucket: str, watch_timeout: float = 5.0
) -> AssetStateReader | None:
    """A reader of ``bucket``, or None while the bucket does not exist (nothing stored yet)."""
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        return None
    return AssetStateReader(kv, watch_timeout)


async def snapshot_json(
    reader: AssetStateReader | None, asset_uuid: str, item_id: str | None
) -> bytes | None:
    """The ``asset_state`` event data of ``snapshot=true``: :class:`AssetState` JSON (known
    items only, possibly none) or, with ``item_id``, :class:`ItemState` JSON; None for an
    unknown item (no event is sent). ``reader`` None (no bucket yet) means nothing is known."""
    if item_id is not None:
        one = await reader.item(asset_uuid, item_id) if reader is not None else None
        return None if one is None else msgspec.json.encode(one)
    found = await reader.items(asset_uuid) if reader is not None else []
    return msgspec.json.encode(AssetState(asset_uuid=asset_uuid, dataItems=found))
