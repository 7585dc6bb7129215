"""Reading the stream history: replay from a sequence, and where a filter's history begins.

A replay is an ephemeral push consumer (no acks, memory storage) on a private inbox: the
creation answer says how many messages match, each delivery says how many are still pending,
so the replay knows when it has caught up without waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ofa_contract.runtime import BackgroundTasks, get_logger

#: Deletions of finished replay consumers (fire-and-forget, but referenced until done).
_cleanups = BackgroundTasks("replay clean-up", get_logger("edge", "resume"))
#: Messages a replay subscription may hold in the client library before NATS calls it slow.
_REPLAY_PENDING_MSGS = 1_000_000
_REPLAY_PENDING_BYTES = 512 * 1024 * 1024


class HistoryError(RuntimeError):
    """The history could not be read completely (timeout, lost message, NATS error)."""


class StoredMsg(msgspec.Struct, frozen=True):
    """One message of the stream history."""

    seq: int
    subject: str
    data: bytes


class Reset(msgspec.Struct, frozen=True):
    """Body of ``event: reset``: the requested position is not (fully) in the history."""

    reason: str
    requested: int
    first_available: int | None


async def replay(
    nc: NatsClient,
    stream: str,
    filter_subject: str,
    start_seq: int,
    *,
    timeout: float = 10.0,
) -> AsyncGenerator[StoredMsg, None]:
    """Yield every stored message matching ``filter_subject`` from ``start_seq`` on, in order,
    up to the last one stored when the replay began (later ones arrive on the live path).

    Raises :class:`HistoryError` when a message is missing or the next one does not come in time.
    """
    js = nc.jetstream()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(
        inbox, pending_msgs_limit=_REPLAY_PENDING_MSGS, pending_bytes_limit=_REPLAY_PENDING_BYTES
    )
    consumer: str | None = None
    try:
        cfg = _replay_config(inbox, filter_subject, start_seq)
        try:
            info = await js.add_consumer(stream, cfg, timeout=timeout)
        except Exception as exc:
            raise HistoryError(f"cannot create a replay consumer on {stream}: {exc}") from exc
        consumer = info.name
        if not info.num_pending:
            return
        expected_cseq = 1
        while True:
            msg = await _next_delivery(sub, filter_subject, expected_cseq, timeout)
            expected_cseq += 1
            md = msg.metadata
            yield StoredMsg(md.sequence.stream, msg.subject, msg.data)
            if md.num_pending == 0:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if consumer is not None:
            # The consumer would expire by itself (inactive_threshold); deleting it now keeps a
            # burst of resumes from piling consumers up on the server. Not awaited by the client.
            _cleanups.spawn(_delete_consumer(nc, stream, consumer), name="delete-replay-consumer")


def _replay_config(inbox: str, filter_subject: str, start_seq: int) -> ConsumerConfig:
    """An ephemeral push consumer in memory, without acks, from ``start_seq`` on."""
    return ConsumerConfig(
        deliver_subject=inbox,
        filter_subject=filter_subject,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, start_seq),
        ack_policy=AckPolicy.NONE,
        mem_storage=True,
        num_replicas=1,
        inactive_threshold=5.0,
        max_ack_pending=-1,
    )


async def _next_delivery(
    sub: Subscription, filter_subject: str, expected: int, timeout: float
) -> Msg:
    """The next delivery of a replay, which must be consumer sequence ``expected``."""
    try:
        msg = await sub.next_msg(timeout=timeout)
    except Exception as exc:  # nats-py raises its own TimeoutError type
        raise HistoryError(
            f"replay of {filter_subject} stalled after {expected - 1} messages: {exc}"
        ) from exc
    got = msg.metadata.sequence.consumer
    if got != expected:
        raise HistoryError(
            f"replay of {filter_subject} lost a message (consumer seq {got}, expected {expected})"
        )
    return msg


async def _delete_consumer(nc: NatsClient, stream: str, consumer: str) -> None:
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_consumer(stream, consumer)


async def first_kept(nc: NatsClient, stream: str, filter_subject: str) -> int | None:
    """Sequence of the first stored message matching ``filter_subject``; None when there is none."""
    try:
        raw: Any = await nc.jetstream().get_msg(stream, seq=1, subject=filter_subject, next=True)
    except NotFoundError:
        return None
    return int(raw.seq)


async def plan_resume(
    nc: NatsClient, stream: str, filter_subject: str, last_event_id: int
) -> tuple[int | None, Reset | None]:
    """Where to start replaying after ``last_event_id``, and the reset to announce, if any.

    Returns ``(start_seq or None for live only, reset or None)``:
    - history intact after the position: replay from ``last_event_id + 1``;
    - the position fell out of the history (the first kept message of the filter is later than
      the next one the client needs): reset ``beyond_history``, replay from the first kept;
    - the position is beyond the stream's last sequence (the stream was recreated, or the id
      came from another installation): reset ``unknown_position``, live only.
    """
    info = await nc.jetstream().stream_info(stream)
    last_seq = int(info.state.last_seq or 0)
    if last_event_id > last_seq:
        first = await first_kept(nc, stream, filter_subject)
        return None, Reset("unknown_position", last_event_id, first)
    first = await first_kept(nc, stream, filter_subject)
    if first is None:
        # Nothing of this asset is kept. If the stream dropped messages after the position,
        # some of them may have been this asset's.
        stream_first = int(info.state.first_seq or 0)
        if stream_first > last_event_id + 1:
            return None, Reset("beyond_history", last_event_id, None)
        return None, None
    if first > last_event_id + 1:
        return first, Reset("beyond_history", last_event_id, first)
    return last_event_id + 1, None


class ResumePlanner:
    """:func:`plan_resume` with concurrent identical requests sharing one lookup.

    After an edge restart thousands of clients of the same asset come back with the same
    Last-Event-ID at once; they need one stream-info and one first-message lookup, not one each.
    Only lookups in flight are shared (nothing is cached), so every answer is at least as fresh
    as the request that receives it.
    """

    def __init__(self, nc: NatsClient, stream: str) -> None:
        self.nc = nc
        self.stream = stream
        self._inflight: dict[tuple[str, int], asyncio.Future[tuple[int | None, Reset | None]]] = {}

    async def plan(
        self, filter_subject: str, last_event_id: int
    ) -> tuple[int | None, Reset | None]:
        """Same as :func:`plan_resume` for this planner's stream."""
        key = (filter_subject, last_event_id)
        fut = self._inflight.get(key)
        if fut is None:
            fut = asyncio.ensure_future(
                plan_resume(self.nc, self.stream, filter_subject, last_event_id)
            )
            self._inflight[key] = fut
            fut.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(fut)
