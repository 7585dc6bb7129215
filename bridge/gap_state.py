"""Keep ``asset_state`` right when the gap watcher re-publishes records older than stored ones.

The ``asset_state`` bucket sources the asset stream and keeps each subject's last message, so a
re-published lost record (stored at the end of the stream) would become an item's latest value
although the stream holds a newer record of that item. After the re-publish, once the bucket
sourced it, the newer record's value is put back, guarded by the bucket subject's last sequence
so that a record bridged meanwhile is never overwritten.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from bridge.gaps import parse_msg_id
from bridge.tracker import Entry
from ofa_contract.layout import Layout, NatsHeaders
from ofa_contract.runtime import get_logger

log = get_logger("bridge", __name__)


async def newest_stored(
    js: JetStreamContext, stream: str, subjects: Iterable[str]
) -> dict[str, RawStreamMsg]:
    """The last message the stream holds on each subject (subjects it has none on are left out)."""
    out = {}
    for subject in subjects:
        try:
            out[subject] = await js.get_msg(stream, subject=subject)
        except NotFoundError:
            continue
    return out


def is_newer(stored: RawStreamMsg, entry: Entry) -> bool:
    """True when ``stored`` comes after ``entry``'s record in Kafka: a higher offset of the same
    partition or, from another topic (the asset moved group), a later Kafka timestamp."""
    headers = stored.headers or {}
    coord = parse_msg_id(headers.get(NatsHeaders.MSG_ID, ""))
    tp = entry.tracker.tp
    if coord is not None and (coord.topic, coord.partition) == (tp.topic, tp.partition):
        return coord.offset > entry.offset
    try:
        return int(headers.get(NatsHeaders.KAFKA_TS, "")) >= entry.timestamp
    except ValueError:
        return False


async def restore_latest(
    js: JetStreamContext,
    layout: Layout,
    newer: RawStreamMsg,
    repaired_msg_id: str,
    timeout: float,
) -> bool:
    """Put ``newer``'s value back as its item's state once the bucket holds the re-published
    record (``repaired_msg_id``); False when it did not within ``timeout`` or something newer
    arrived meanwhile (then the state is right already)."""
    bucket = layout.state_bucket
    subject = newer.subject or ""
    key_subject = f"$KV.{bucket}.{subject[len(layout.stream_subject_prefix) + 1 :]}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = await js.get_msg(f"KV_{bucket}", subject=key_subject)
        except NotFoundError:
            last = None
        if last is not None and (last.headers or {}).get(NatsHeaders.MSG_ID) == repaired_msg_id:
            break
        if time.monotonic() >= deadline:
            log.warning(
                "asset_state of %s may hold a re-published older value: the bucket did not "
                "source %s within %.0fs",
                subject,
                repaired_msg_id,
                timeout,
            )
            return False
        # Sourcing is asynchronous and says nothing when it is done: look again shortly.
        await asyncio.sleep(0.05)
    try:
        await js.publish(
            key_subject,
            newer.data or b"",
            timeout=timeout,
            headers={"Nats-Expected-Last-Subject-Sequence": str(last.seq)},
        )
    except Exception as exc:
        log.info("asset_state of %s not set back (%s): a newer record came", subject, exc)
        return False
    return True
