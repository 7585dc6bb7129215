"""Live fan-out: one NATS subscription per asset in use, feeding bounded per-client byte queues.

The feed encodes each live event once (:func:`edge.sse.event_frame`) and appends the same bytes
to every client's queue. Appending never waits: a client whose queue exceeds its byte bound is
cut off (it resumes by Last-Event-ID), so a slow client never slows the subscription or others.
The bound leaves out the largest queued frame: one frame may be larger than the bound (a record
of up to 1 MiB is valid) and still reaches a client that reads (docs/decisions.md, "big frame").

Per-subject sequence headers (``Nats-Sequence``/``Nats-Last-Sequence``, added by the stream's
RePublish) reveal a live message that never arrived; the feed then holds later messages back,
fetches the missing ones from the stream, delivers them, and only then carries on. The fetch
reads every data item of the asset, not only the revealing one: when the live path lost a run
of messages (a NATS node cut off), each item's gap shows only with that item's next message, and
filling item by item delivered one item's later messages before another's earlier ones (out of
order; a client that then resumed by Last-Event-ID skipped the unfilled ones for good).

A single lost message shows only with its own item's next message, after later messages of the
asset's other items have gone out. Such losses happen around a change of the stream's leader
(RePublish is at most once), so the hub watches the stream's leader-election advisory and then
re-syncs every feed: live messages are held while the asset is read from the stream after the
last message the feed delivered, and pass afterwards, de-duplicated (docs/decisions.md,
"Re-sync on a stream leader change").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from edge import sse
from edge.metrics import EdgeMetrics
from edge.resume import HistoryError, replay
from ofa_contract.compat import subscription_sid
from ofa_contract.layout import Layout, NatsHeaders
from ofa_contract.naming import decode_token
from ofa_contract.runtime import BackgroundTasks, get_logger

log = get_logger("edge", "fanout")

#: The live subscription hands messages to an in-process queue; it must essentially never
#: drop (a drop is detected as a gap and costs every client of the asset a reconnect).
_LIVE_PENDING_MSGS = 1_000_000
_LIVE_PENDING_BYTES = 512 * 1024 * 1024
#: Re-syncs reading the stream at once after a leader change: each is a consumer created on a
#: stream whose leader was just elected; an edge with thousands of assets must not create them
#: all in the same instant (live messages of a waiting feed are held meanwhile).
_RESYNC_CONCURRENCY = 16
#: Published by a clustered stream's new leader (a single-node JetStream never sends it).
_LEADER_ELECTED = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}"


class LeaderElected(msgspec.Struct):
    """The fields we log of ``io.nats.jetstream.advisory.v1.stream_leader_elected``."""

    stream: str = ""
    leader: str = ""


class Wakeup:
    """``asyncio.Event`` for one waiter, without the Event's waiter deque (about 600 bytes per
    stream; idle memory per connection is a goal of its own, docs/decisions.md)."""

    __slots__ = ("_flag", "_fut")

    def __init__(self) -> None:
        self._flag = False
        self._fut: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        """Whether :meth:`set` was called since the last :meth:`clear`."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake the waiter, if any."""
        if not self._flag:
            self._flag = True
            fut = self._fut
            if fut is not None and not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        """Reset the flag."""
        self._flag = False

    async def wait(self) -> None:
        """Until the flag is set (at once if it is); one waiter at a time."""
        if self._flag:
            return
        fut = asyncio.get_running_loop().create_future()
        self._fut = fut
        try:
            await fut
        finally:
            self._fut = None


class Client:
    """One SSE stream: a bounded queue of pre-encoded frames and a wake-up event.

    While the client replays history it is ``replaying``: live frames are held aside and, at the
    hand-over, only those after the last replayed sequence are kept (no gap, no duplicate).

    While its stream is ``parked`` (idle, waiting for the wake-up, nothing queued) and it has a
    ``writer``, a live frame is written straight to its socket: no wake-up, no queue.
    """

    __slots__ = (
        "closed",
        "floor",
        "held",
        "held_bytes",
        "held_largest",
        "item_token",
        "limit",
        "on_cut",
        "parked",
        "queue",
        "queue_bytes",
        "queue_largest",
        "queued_at",
        "replaying",
        "wakeup",
        "writer",
    )

    def __init__(self, item_token: str | None, limit: int, on_cut: Callable[[], None]) -> None:
        self.item_token = item_token
        self.limit = limit
        # A list, not a deque: it is only appended to and emptied whole, and an empty deque
        # costs about 600 bytes per stream.
        self.queue: list[bytes] = []
        self.queue_bytes = 0
        #: Size of the largest frame queued: it does not count against ``limit``.
        self.queue_largest = 0
        self.queued_at = 0.0
        self.wakeup = Wakeup()
        self.closed: str | None = None
        self.replaying = True
        #: Frames up to this sequence came from the history replay: never send them again.
        self.floor = 0
        self.held: list[tuple[int, bytes]] = []
        self.held_bytes = 0
        self.held_largest = 0
        self.on_cut = on_cut
        #: Set by the stream while it waits for the wake-up with nothing queued.
        self.parked = False
        self.writer: sse.DirectWriter | None = None

    def push(self, seq: int, token: str, frame: bytes, chunked: bytes | None = None) -> bool:
        """Deliver a live frame (``chunked``: the same as an HTTP chunk, if already built):
        written now when the stream is parked, else queued. False when it was not delivered
        (filtered, closed, cut)."""
        if (
            self.closed is not None
            or seq <= self.floor
            or (self.item_token is not None and token != self.item_token)
        ):
            return False
        if self.parked:
            writer = self.writer
            if writer is not None and writer.write(chunked or sse.chunk(frame)):
                return True
            # The socket pushes back: from now on frames queue (in order) until the stream
            # has sent them through its own flow-controlled path and parks again.
            self.parked = False
        size = len(frame)
        if self.replaying:
            self.held.append((seq, frame))
            self.held_bytes += size
            self.held_largest = max(self.held_largest, size)
            if self.held_bytes - self.held_largest > self.limit:
                self.cut("too many live events arrived while replaying history")
            return True
        if not self.queue:
            self.queued_at = time.monotonic()
        self.queue.append(frame)
        self.queue_bytes += size
        if size > self.queue_largest:
            self.queue_largest = size
        # The queue is only ever emptied whole (take, cut), so the largest frame stays queued
        # until the sums are reset: what exceeds the bound is what the client did not read.
        if self.queue_bytes - self.queue_largest > self.limit:
            self.cut(f"client too slow: more than {self.limit} bytes queued")
            return False
        if not self.wakeup.is_set():
            self.wakeup.set()
        return True

    def end_replay(self, last_replayed: int) -> None:
        """Switch to live: keep the held frames after ``last_replayed``, in arrival order."""
        self.floor = last_replayed
        for seq, frame in self.held:
            if seq > last_replayed:
                if not self.queue:
                    self.queued_at = time.monotonic()
                self.queue.append(frame)
                self.queue_bytes += len(frame)
                self.queue_largest = max(self.queue_largest, len(frame))
        self.held = []
        self.held_bytes = 0
        self.held_largest = 0
        self.replaying = False
        if self.queue:
            self.wakeup.set()

    def cut(self, reason: str) -> None:
        """Close as too slow: queued frames are dropped (the client resumes from what it got)."""
        if self.closed is not None:
            return
        self.closed = reason
        self.queue.clear()
        self.queue_bytes = 0
        self.queue_largest = 0
        self.held = []
        self.wakeup.set()
        self.on_cut()

    def close(self, reason: str) -> None:
        """Close after the frames already queued (shutdown, lost NATS connection...)."""
        if self.closed is None:
            self.closed = reason
            self.wakeup.set()

    def take(self) -> bytes:
        """Everything queued, as one chunk (one socket write for many events)."""
        data = b"".join(self.queue) if len(self.queue) != 1 else self.queue[0]
        self.queue.clear()
        self.queue_bytes = 0
        self.queue_largest = 0
        return data


class AssetFeed:
    """The live subscription of one asset and the clients it feeds."""

    def __init__(self, hub: Hub, asset_uuid: str) -> None:
        self.hub = hub
        self.asset_uuid = asset_uuid
        self.live_wildcard = hub.layout.live_filter(asset_uuid)
        #: ``<live prefix>.<asset token>.``: what precedes a data item's token in a live subject.
        self._live_head = self.live_wildcard.removesuffix("*")
        #: The same for the stream's subjects (what a replay yields).
        self._stream_head = hub.layout.stream_filter(asset_uuid).removesuffix("*")
        self.clients: set[Client] = set()
        self.refs = 0
        self.sub: Any = None
        self.dead = False
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: Stream sequence when the subscription became active: a later message must arrive.
        self.start_seq = 0
        #: Highest stream sequence delivered (``start_seq`` before any): a re-sync reads on
        #: from the next one.
        self.last_seq = 0
        self.last_by_subject: dict[str, int] = {}
        self._backlog: deque[Msg] | None = None
        self._fill_task: asyncio.Task[None] | None = None
        #: Why the feed must re-read the stream before its next live message (None: no need).
        self._resync: str | None = None

    async def start(self) -> None:
        """Subscribe (confirmed by a flush), then note the stream's last sequence.

        The order matters: every message stored after the subscription became active arrives
        live, so none stored after ``start_seq`` is missed. Noting the position first left a
        window in which messages were stored but not received; they were then filled one data
        item at a time, each only when that item's next message revealed it, i.e. after later
        messages of other items: out of order, and a browser saw gaps and duplicates. Messages
        arriving before ``start_seq`` is known wait in the backlog, then pass through in order.
        """
        nc = self.hub.nc
        self._backlog = deque()
        self.sub = await nc.subscribe(
            self.live_wildcard,
            cb=self._on_msg,
            pending_msgs_limit=_LIVE_PENDING_MSGS,
            pending_bytes_limit=_LIVE_PENDING_BYTES,
        )
        # A client that hangs up cancels this coroutine. nats-py keeps a cancelled flush's future
        # in its PONG queue and its read loop then dies on it (InvalidStateError): the edge would
        # receive nothing more from NATS. So the flush completes even when its caller is gone.
        await asyncio.shield(nc.flush())
        info = await nc.jetstream().stream_info(self.hub.stream)
        self.start_seq = self.last_seq = int(info.state.last_seq or 0)
        held, self._backlog = self._backlog, None
        for msg in held:
            await self._on_msg(msg)  # never suspends: the messages pass in arrival order
        if self._resync is not None:
            self.resync(self._resync)  # the leader changed while the feed was starting

    def resync(self, reason: str) -> None:
        """Re-read the asset from the stream after the last delivered message, before any
        further live message (the live path may have lost messages that no later message of
        their own data item has revealed yet). ``reason`` labels the metric."""
        if self.dead:
            return
        self._resync = reason
        # A running fill re-syncs before its next held message; a feed still starting
        # re-syncs when its start position is known (start()).
        if self._backlog is None:
            self._backlog = deque()
            self._begin_fill()

    def _begin_fill(self) -> None:
        self._fill_task = self.hub.tasks.spawn(self._fill(), name="edge-gap-fill")

    async def stop(self) -> None:
        """Unsubscribe; the feed is not used again."""
        self.dead = True
        if self._fill_task is not None:
            self._fill_task.cancel()
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()

    def stream_filter(self, item_token: str | None) -> str:
        """Stream filter subject for this asset (or the data item of an encoded token)."""
        item_id = decode_token(item_token) if item_token else None
        return self.hub.layout.stream_filter(self.asset_uuid, item_id)

    async def _on_msg(self, msg: Msg) -> None:
        if self.dead:
            return
        drop = self.hub.test_drop_live
        if drop is not None and drop(msg):
            return
        if self._backlog is not None:
            self._backlog.append(msg)
            return
        if self._gap_from(msg) is not None:
            self._backlog = deque([msg])
            self._begin_fill()
            return
        self._accept(msg)

    def _gap_from(self, msg: Msg) -> int | None:
        """First sequence that may be missing before ``msg`` on its subject, or None."""
        hdrs = msg.headers or {}
        try:
            prev_stored = int(hdrs.get(NatsHeaders.LAST_SEQUENCE, "0"))
        except ValueError:
            return None
        prev_seen = self.last_by_subject.get(msg.subject)
        floor = prev_seen if prev_seen is not None else self.start_seq
        if prev_stored > floor:
            return floor + 1
        return None

    def _accept(self, msg: Msg) -> None:
        hdrs = msg.headers or {}
        try:
            seq = int(hdrs[NatsHeaders.SEQUENCE])
        except (KeyError, ValueError):
            log.warning("live message without %s on %s; dropped", NatsHeaders.SEQUENCE, msg.subject)
            return
        prev = self.last_by_subject.get(msg.subject)
        if prev is not None and seq <= prev:
            return  # already delivered (a fill overlapped the live message)
        self._deliver(msg.subject[len(self._live_head) :], msg.subject, seq, msg.data)

    def _deliver(self, token: str, live_subject: str, seq: int, data: bytes) -> None:
        self.last_by_subject[live_subject] = seq
        if seq > self.last_seq:
            self.last_seq = seq
        frame = sse.event_frame(seq, data)
        chunked = sse.chunk(frame)
        n = 0
        for client in self.clients:
            if client.push(seq, token, frame, chunked):
                n += 1
        if n:
            self.hub.metrics.delivered.inc(n)

    async def _fill(self) -> None:
        """Deliver the backlog in order, fetching what the live path missed from the stream
        (and re-syncing first whenever one is asked for)."""
        backlog = self._backlog
        assert backlog is not None
        try:
            while self._resync is not None or backlog:
                if self._resync is not None:
                    await self._resync_from_stream(self._resync)
                    continue
                msg = backlog[0]
                start = self._gap_from(msg)
                if start is not None:
                    await self._fetch_missing(msg, start)
                backlog.popleft()
                self._accept(msg)
            self._backlog = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "live data of %s could not be completed from the stream (gap fill or"
                " re-sync): %s; clients reconnect and resume",
                self.asset_uuid,
                exc,
            )
            self._backlog = None
            self._resync = None
            self.hub.kill_feed(self, "edge could not fill a gap in the live data; reconnect")

    async def _resync_from_stream(self, reason: str) -> None:
        """Deliver what the stream holds for the asset after the last delivered message."""
        self._resync = None  # one asked for while this one runs runs after it
        self.hub.metrics.resyncs.labels(reason).inc()
        start = self.last_seq + 1
        async with self.hub.resync_slots:
            found = await self._deliver_stored(start, None)
        log.info(
            "re-synced %s after %s: %d messages from seq %d on delivered from the stream",
            self.asset_uuid,
            reason,
            found,
            start,
        )

    async def _fetch_missing(self, msg: Msg, start: int) -> None:
        """Deliver what is stored for the asset (every data item) from ``start`` up to ``msg``,
        in stream order, skipping what each item already delivered."""
        self.hub.metrics.live_gaps.inc()
        hdrs = msg.headers or {}
        upto = int(hdrs.get(NatsHeaders.SEQUENCE, "0"))
        log.info(
            "live gap on %s from seq %d to %d; filling from the stream", msg.subject, start, upto
        )
        await self._deliver_stored(start, upto)
        # Everything stored before the revealing message is now delivered, or gone from the
        # stream (limits): either way, do not ask again.
        prev_stored = int(hdrs.get(NatsHeaders.LAST_SEQUENCE, "0"))
        self.last_by_subject[msg.subject] = max(
            self.last_by_subject.get(msg.subject, 0), prev_stored
        )

    async def _deliver_stored(self, start: int, upto: int | None) -> int:
        """Deliver the asset's stored messages from ``start`` (before ``upto`` if given, else
        up to the last one stored) in stream order, skipping what each data item already
        delivered; return how many were delivered."""
        reached = upto is None
        found = 0
        async for stored in replay(
            self.hub.nc,
            self.hub.stream,
            self.stream_filter(None),
            start,
            timeout=self.hub.history_timeout_s,
        ):
            if upto is not None and stored.seq >= upto:
                reached = True
                break
            token = stored.subject[len(self._stream_head) :]
            live_subject = self._live_head + token
            prev = self.last_by_subject.get(live_subject)
            if prev is None or stored.seq > prev:
                self.hub.metrics.gap_events_filled.inc()
                self._deliver(token, live_subject, stored.seq, stored.data)
                found += 1
        if not reached:
            # The replay ended before the message that revealed the gap (a stream whose leader
            # just changed answered with less): delivering it now would skip what lies between
            # (clients resuming after it would never get them). What was delivered is in
            # stream order, so clients resume from there (_fill kills the feed).
            raise HistoryError(f"the stream gave the asset's messages only up to before {upto}")
        return found


def _check_alive(feed: AssetFeed) -> None:
    """Raise when ``feed`` was killed while it subscribed (a NATS reconnect kills every feed,
    those still starting too): it is unsubscribed and gets no live message, so a client
    attached to it would replay its history, then wait forever without an error."""
    if feed.dead:
        raise RuntimeError("the live subscription was closed while starting (NATS reconnected)")


class Hub:
    """All feeds and clients of one edge node."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        layout: Layout,
        metrics: EdgeMetrics,
        history_timeout_s: float = 10.0,
    ) -> None:
        self.nc = nc
        self.layout = layout
        self.stream = layout.stream
        self.metrics = metrics
        self.history_timeout_s = history_timeout_s
        self.feeds: dict[str, AssetFeed] = {}
        self.clients: set[Client] = set()
        self.closing = False
        #: Test hook: return True to drop a live message as if NATS had lost it.
        self.test_drop_live: Callable[[Msg], bool] | None = None
        #: Unsubscribes and gap fills that outlive their caller (awaited by :meth:`close`).
        self.tasks = BackgroundTasks("edge fan-out", log)
        self.resync_slots = asyncio.Semaphore(_RESYNC_CONCURRENCY)
        self._leader_sub: Any = None

    async def watch_stream_leader(self) -> None:
        """Re-sync every feed whenever the stream elects a leader (see the module docstring).

        A plain subscription: nats.py renews it after a reconnect (which closes every feed
        anyway, node.py). Unclustered JetStream never elects, so nothing arrives there."""
        self._leader_sub = await self.nc.subscribe(
            _LEADER_ELECTED.format(stream=self.stream), cb=self._on_leader_elected
        )

    async def _on_leader_elected(self, msg: Msg) -> None:
        try:
            leader = msgspec.json.decode(msg.data, type=LeaderElected).leader
        except msgspec.DecodeError:
            leader = "?"  # the subject says enough: re-sync anyway
        log.info(
            "stream %s elected leader %s; re-syncing %d live feeds",
            self.stream,
            leader,
            len(self.feeds),
        )
        self.resync_all("leader_elected")

    def resync_all(self, reason: str) -> None:
        """Re-sync every live feed from the stream (:meth:`AssetFeed.resync`)."""
        if self.closing:
            return  # every client was told to reconnect elsewhere
        for feed in list(self.feeds.values()):
            feed.resync(reason)

    async def acquire(self, asset_uuid: str) -> AssetFeed:
        """The live feed of an asset, subscribed and confirmed; counts a reference."""
        feed = self.feeds.get(asset_uuid)
        if feed is None:
            feed = AssetFeed(self, asset_uuid)
            self.feeds[asset_uuid] = feed
            self.metrics.subscriptions.set(len(self.feeds))
            try:
                await feed.start()
                _check_alive(feed)
            except BaseException as exc:
                if self.feeds.get(asset_uuid) is feed:
                    del self.feeds[asset_uuid]
                self.metrics.subscriptions.set(len(self.feeds))
                feed.started.set_exception(RuntimeError(f"cannot subscribe: {exc}"))
                feed.started.exception()  # mark retrieved
                self.tasks.spawn(feed.stop(), name="edge-unsubscribe")
                raise
            feed.started.set_result(None)
        else:
            await asyncio.shield(feed.started)
            _check_alive(feed)
        feed.refs += 1
        return feed

    def attach(self, feed: AssetFeed, client: Client) -> None:
        """Start feeding ``client`` (in replay mode until :meth:`Client.end_replay`)."""
        feed.clients.add(client)
        self.clients.add(client)
        self.metrics.connections.set(len(self.clients))

    def release(self, feed: AssetFeed, client: Client | None) -> None:
        """Drop a client and a reference; the last reference unsubscribes."""
        if client is not None:
            feed.clients.discard(client)
            self.clients.discard(client)
            self.metrics.connections.set(len(self.clients))
        feed.refs -= 1
        if feed.refs <= 0 and not feed.clients:
            if self.feeds.get(feed.asset_uuid) is feed:
                del self.feeds[feed.asset_uuid]
                self.metrics.subscriptions.set(len(self.feeds))
            self.tasks.spawn(feed.stop(), name="edge-unsubscribe")

    def kill_feed(self, feed: AssetFeed, reason: str) -> None:
        """Close every client of a feed that can no longer be trusted, and forget it."""
        if self.feeds.get(feed.asset_uuid) is feed:
            del self.feeds[feed.asset_uuid]
            self.metrics.subscriptions.set(len(self.feeds))
        feed.dead = True
        for client in list(feed.clients):
            client.close(reason)
        self.tasks.spawn(feed.stop(), name="edge-unsubscribe")

    def kill_all(self, reason: str) -> None:
        """Close every feed (e.g. after a NATS reconnect: live messages may have been lost)."""
        for feed in list(self.feeds.values()):
            self.kill_feed(feed, reason)

    def feed_of_sid(self, sid: int) -> AssetFeed | None:
        """The feed owning a subscription id (for slow-consumer errors)."""
        for feed in self.feeds.values():
            if feed.sub is not None and subscription_sid(feed.sub) == sid:
                return feed
        return None

    def begin_shutdown(self, reason: str) -> None:
        """Refuse new streams and tell every client to reconnect (elsewhere)."""
        self.closing = True
        for client in list(self.clients):
            client.close(reason)

    async def close(self) -> None:
        """Stop watching the stream leader; wait for (or cancel) the unsubscribes and gap fills
        still running."""
        if self._leader_sub is not None:
            with contextlib.suppress(Exception):
                await self._leader_sub.unsubscribe()
        await self.tasks.close(timeout=5)


__all__ = ["AssetFeed", "Client", "Hub", "Wakeup"]
