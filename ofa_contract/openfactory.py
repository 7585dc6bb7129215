"""OpenFactory's NATS fan-out layout: the subject and payload its forwarder publishes.

OpenFactory's SDK (``Asset.subscribe_to_messages`` and friends) subscribes with core NATS to
``<ASSET_UUID upper-cased>.*`` and JSON-decodes each payload. Its forwarder publishes every
``ofa_assets`` record as:

- subject ``<key>.<id>``: the record key and the data item id, unescaped;
- payload: the record's JSON object re-serialised (Python ``json.dumps`` defaults, which is what
  the forwarder uses, so the bytes are the same), with the first key whose lower-case is ``id``
  removed and ``attributes.asset_forwarder_timestamp``, ``attributes.kafka_timestamp`` (ISO-8601,
  milliseconds, ``Z``) and ``attributes.kafka_timestamp_type`` (``producer``/``broker``) added.

Where this module differs from OpenFactory's forwarder, on purpose:

- The key is upper-cased: the SDK subscribes to the upper-cased uuid, so a record keyed
  ``prover3018`` reaches SDK subscribers (OpenFactory publishes it under the lower-case key, where
  no SDK subscription matches). Keys differing only in case share one subject.
- A subject NATS cannot carry as a literal is skipped and counted (:class:`Skipped` with a stable
  ``reason``), instead of being published: whitespace or control characters (they split the
  protocol line: the server closes the connection, cutting every publish on it), a token that is
  exactly ``*`` or ``>`` (a wildcard: it would be delivered to the wrong subscriptions), an empty
  token (``..``, or a leading/trailing ``.``), a subject longer than :data:`MAX_SUBJECT_BYTES`,
  and subjects in reserved name spaces (``$JS.API...`` would be a JetStream API call, ``_INBOX``
  could answer someone's request, the serving layer's own stream subjects would be stored).
- A ``.`` inside a key or an id is published as OpenFactory does: the subject has more tokens.
  ``<UUID>.*`` subscribers do not see an id with a dot (as in OpenFactory);
  ``subscribe_to_attribute("a.b")`` (exact subject) and ``<UUID>.>`` subscribers do.
- ``*`` or ``>`` inside a longer token (``a*b``) is a literal for NATS and is published.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

#: Longest subject published (UTF-8 bytes); nats-server's default protocol line limit is 4096.
MAX_SUBJECT_BYTES = 1024
#: Subject prefixes never published to, whatever the configuration.
ALWAYS_RESERVED: tuple[str, ...] = ("_INBOX",)

#: Kafka's timestamp type (record batch attribute bit: 0 CreateTime, 1 LogAppendTime) as named
#: in OpenFactory's payload.
_TIMESTAMP_TYPES = {0: "producer", 1: "broker"}


class Skipped(ValueError):
    """The record cannot be published in OpenFactory's layout; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class OpenFactoryMessage(NamedTuple):
    """One core NATS message in OpenFactory's layout."""

    subject: str
    payload: bytes


def iso_ms(epoch_ms: int) -> str:
    """``2026-01-27T15:37:03.882Z``: UTC, millisecond precision, as OpenFactory writes it."""
    seconds, ms = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def _bad_char(text: str) -> str | None:
    for ch in text:
        if ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F:
            return ch
    return None


@lru_cache(maxsize=65536)
def subject(key: str, item_id: str, reserved: tuple[str, ...] = ()) -> str:
    """The subject ``<KEY>.<id>`` (key upper-cased); raises :class:`Skipped` when NATS cannot
    carry it as a literal subject or it falls in a reserved name space (``reserved`` holds
    subject prefixes, e.g. the stream's; :data:`ALWAYS_RESERVED` and ``$...`` always apply)."""
    subj = f"{key.upper()}.{item_id}"
    bad = _bad_char(subj)
    if bad is not None:
        raise Skipped("whitespace", f"subject {subj[:80]!r} holds the character {bad!r}")
    tokens = subj.split(".")
    if any(t in ("*", ">") for t in tokens):
        raise Skipped("wildcard", f"subject {subj[:80]!r} has a wildcard token")
    if "" in tokens:
        raise Skipped("empty_token", f"subject {subj[:80]!r} has an empty token")
    if len(subj.encode()) > MAX_SUBJECT_BYTES:
        raise Skipped("too_long", f"subject of {len(subj.encode())} bytes > {MAX_SUBJECT_BYTES}")
    if subj.startswith("$") or any(
        subj == p or subj.startswith(p + ".") for p in (*ALWAYS_RESERVED, *reserved)
    ):
        raise Skipped("reserved", f"subject {subj[:80]!r} is in a reserved name space")
    return subj


def payload(
    value: bytes, kafka_timestamp_ms: int | None, timestamp_type: int, now_ms: int
) -> tuple[str, bytes]:
    """(id, payload bytes) of one record in OpenFactory's layout; raises :class:`Skipped`.

    ``timestamp_type`` is Kafka's (0 CreateTime, 1 LogAppendTime); a missing or negative
    ``kafka_timestamp_ms`` (no timestamp) leaves both Kafka keys out, as OpenFactory does.
    """
    try:
        obj: Any = json.loads(value)
    except ValueError as exc:
        raise Skipped("not_json", f"value is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Skipped("not_object", "value is not a JSON object")
    attrs = obj.setdefault("attributes", {})
    if not isinstance(attrs, dict):
        raise Skipped("attributes_not_object", "`attributes` is not a JSON object")
    attrs["asset_forwarder_timestamp"] = iso_ms(now_ms)
    if kafka_timestamp_ms is not None and kafka_timestamp_ms >= 0:
        attrs["kafka_timestamp"] = iso_ms(kafka_timestamp_ms)
        attrs["kafka_timestamp_type"] = _TIMESTAMP_TYPES.get(timestamp_type, "unknown")
    id_key = next((k for k in obj if k.lower() == "id"), None)
    item_id = obj.pop(id_key) if id_key is not None else None
    if not isinstance(item_id, str) or not item_id:
        raise Skipped("no_id", "the first `id` key (any case) is not a non-empty string")
    return item_id, json.dumps(obj).encode()


def to_openfactory(
    key: str,
    value: bytes,
    kafka_timestamp_ms: int | None,
    timestamp_type: int,
    now_ms: int,
    reserved: Sequence[str] = (),
) -> OpenFactoryMessage:
    """The core NATS message OpenFactory's forwarder would publish for this record (with the
    differences the module docstring lists); raises :class:`Skipped`."""
    item_id, body = payload(value, kafka_timestamp_ms, timestamp_type, now_ms)
    return OpenFactoryMessage(subject(key, item_id, tuple(reserved)), body)
