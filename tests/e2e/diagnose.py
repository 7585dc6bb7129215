"""Where did a missing event go? Look an (asset, seq) up in the input topic, the derived topics
and the JetStream stream, so that a failing end-to-end test names the stage that lost it."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from aiokafka.admin import AIOKafkaAdminClient

from ofa_contract.layout import Layout
from tests.helpers import consume_all
from tests.support.jetstream import stored_messages


class _Attrs(msgspec.Struct):
    seq: int = 0


class _Rec(msgspec.Struct):
    attributes: _Attrs = msgspec.field(default_factory=_Attrs)


def _seq(value: bytes | None) -> int | None:
    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError, TypeError):
        return msgspec.json.decode(value or b"", type=_Rec).attributes.seq
    return None


async def _kafka_index(kafka: str, topics: list[str]) -> dict[tuple[str, int], str]:
    out: dict[tuple[str, int], str] = {}
    for r in await consume_all(kafka, topics, timeout=30):
        if r.key is None:
            continue
        s = _seq(r.value)
        if s is not None:
            out[(r.key.decode(errors="replace"), s)] = f"{r.topic}[{r.partition}]@{r.offset}"
    return out


async def stream_index(url: str, layout: Layout, asset: str) -> dict[int, int]:
    """asset seq -> stream sequence, for every stored message of the asset in ``layout``'s
    stream (the stack's, namespaced: the default layout's stream does not exist there)."""
    out: dict[int, int] = {}
    for m in await stored_messages(url, layout.stream, layout.stream_filter(asset), idle_timeout=2):
        s = _seq(m.data)
        if s is not None:
            out[s] = m.metadata.sequence.stream
    return out


async def locate(kafka: str, nats_url: str, layout: Layout, missing: dict[str, list[int]]) -> str:
    """A report line per missing (asset, seq): found in input / derived topic / stream or not.

    A stream that cannot be read shows as ``stream=UNREADABLE(<error>)``, never as ABSENT: a
    swallowed lookup error (the default layout's stream name in a namespaced stack) once
    reported records as missing from the stream while they were stored.
    """
    prefix = layout.group_topic_prefix
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        derived = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()
    inp = await _kafka_index(kafka, [layout.input_topic])
    der = await _kafka_index(kafka, derived) if derived else {}
    lines = []
    for asset, seqs in missing.items():
        stored: dict[int, Any] = {}
        unreadable = ""
        try:
            stored = await stream_index(nats_url, layout, asset)
        except Exception as exc:
            unreadable = f"UNREADABLE({type(exc).__name__}: {exc})"
        for s in seqs[:10]:
            in_stream = unreadable or (f"seq {stored[s]}" if s in stored else "ABSENT")
            lines.append(
                f"  {asset} seq {s}: input={inp.get((asset, s), 'ABSENT')} "
                f"derived={der.get((asset, s), 'ABSENT')} stream={in_stream}"
            )
        if len(seqs) > 10:
            lines.append(f"  {asset}: ... {len(seqs) - 10} more")
    return "\n".join(lines)
