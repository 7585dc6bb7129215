"""Decoding of `ofa_assets` records into :class:`AssetEvent`.

Two producer families write to `ofa_assets` with different key casing (OpenFactory's own producer
uses `ID`/`VALUE`/`TAG`/`TYPE`, the MTConnect producer `id`/`value`/`tag`/`type`), so keys are
matched case-insensitively. The original value bytes are kept untouched: every downstream hop
forwards them byte for byte instead of re-serialising.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import msgspec

#: Records larger than this are rejected (the default `message.max.bytes` of Kafka is ~1 MiB,
#: and NATS' default max payload is 1 MiB; anything larger cannot travel the whole path).
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024

Headers = Sequence[tuple[str, bytes]]


class BadRecord(ValueError):
    """A Kafka record that does not satisfy the `ofa_assets` contract.

    ``kind`` is a short stable code (used in dead-letter headers and metric labels); the message
    says what exactly is wrong.
    """

    kind = "bad_record"
    #: Every subclass, registered by declaring it with its code: ``class X(BadRecord, kind=...)``.
    _kinds: ClassVar[list[type[BadRecord]]] = []

    def __init_subclass__(cls, *, kind: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind
        BadRecord._kinds.append(cls)

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotJson(BadRecord, kind="not_json"):
    """The value is not valid UTF-8 JSON."""


class NotAnObject(BadRecord, kind="not_object"):
    """The value is JSON but not an object."""


class NoId(BadRecord, kind="no_id"):
    """The object has no `ID`/`id` key, or it is empty or not a string."""


class NoKey(BadRecord, kind="no_key"):
    """The record has no key (the key must be the asset uuid)."""


class KeyNotUtf8(BadRecord, kind="key_not_utf8"):
    """The record key is not valid UTF-8."""


class TooLarge(BadRecord, kind="too_large"):
    """The value exceeds the configured maximum record size."""


#: Every kind of bad record, in the order they are declared above.
BAD_RECORD_KINDS: tuple[type[BadRecord], ...] = tuple(BadRecord._kinds)


class AssetEvent(msgspec.Struct, frozen=True):
    """One decoded record of `ofa_assets`.

    ``raw`` holds the original value bytes: forward those, never a re-encoding of the fields.
    """

    asset_uuid: str
    id: str
    value: str | int | float | bool | None
    type: str | None
    tag: str | None
    timestamp: str | None
    attributes: dict[str, Any]
    raw: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


_json_decoder = msgspec.json.Decoder()


def _field(obj: dict[str, Any], name: str) -> Any:
    """Return a field matched case-insensitively; exact-case and upper-case keys win."""
    upper = name.upper()
    if upper in obj:
        return obj[upper]
    if name in obj:
        return obj[name]
    for key, val in obj.items():
        if key.lower() == name:
            return val
    return None


def decode_key(key: bytes | None) -> str:
    """Decode a record key into an asset uuid, or raise :class:`NoKey`/:class:`KeyNotUtf8`."""
    if key is None or len(key) == 0:
        raise NoKey("record has no key; the key must be the asset uuid as UTF-8")
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyNotUtf8(
            f"record key is not valid UTF-8 (byte {exc.start}: {key[exc.start : exc.start + 1]!r})"
        ) from None


def decode_record(
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] = (),
    *,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> AssetEvent:
    """Decode one Kafka record of `ofa_assets`.

    Raises a subclass of :class:`BadRecord` naming what is wrong.
    """
    asset_uuid = decode_key(key)
    if value is None:
        raise NotJson("record has no value (tombstone); expected a JSON object")
    if len(value) > max_bytes:
        raise TooLarge(f"record value is {len(value)} bytes; the limit is {max_bytes} bytes")
    try:
        obj = _json_decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise NotJson(f"record value is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise NotAnObject(f"record value is JSON {type(obj).__name__}, expected an object")
    item_id = _field(obj, "id")
    if not isinstance(item_id, str) or not item_id:
        raise NoId("record value has no non-empty string `ID`/`id` key")
    attributes = _field(obj, "attributes")
    if not isinstance(attributes, dict):
        attributes = {}
    val = _field(obj, "value")
    if isinstance(val, (dict, list)):
        # Not in either producer family, but not worth losing the event for: keep it as text.
        val = msgspec.json.encode(val).decode()
    type_ = _field(obj, "type")
    tag = _field(obj, "tag")
    ts = attributes.get("timestamp")
    return AssetEvent(
        asset_uuid=asset_uuid,
        id=item_id,
        value=val,
        type=type_ if isinstance(type_, str) else None,
        tag=tag if isinstance(tag, str) else None,
        timestamp=ts if isinstance(ts, str) else None,
        attributes=attributes,
        raw=bytes(value),
        headers=tuple((k, bytes(v) if v is not None else b"") for k, v in headers),
    )
