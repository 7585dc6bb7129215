"""One SSE stream: the request it was opened with, whether the node takes it, and the session
that sends the resume history and then the live events.

The session's body is a chain of small async generators over pre-built bytes: the ``retry:``
line once the live subscription is confirmed, the optional snapshot, the history after
``Last-Event-ID`` (with the hand-over to live), then the live frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from litestar import Request

from edge import sse
from edge.fanout import AssetFeed, Client
from edge.node import EdgeNode
from edge.resume import HistoryError, Reset, replay
from edge.transport import CloseWatchdog
from ofa_contract.asset_state import snapshot_json
from ofa_contract.auth import AuthError, find_token
from ofa_contract.naming import encode_token
from ofa_contract.runtime import get_logger

log = get_logger("edge", "session")

#: History frames are sent in chunks of about this size (fewer socket writes).
_REPLAY_CHUNK = 64 * 1024
#: Longest encoded asset uuid plus data item id accepted. Both end up in NATS subjects, and a
#: protocol line longer than the server's max_control_line (4096 by default) makes nats-server
#: close the edge's connection: one such request would cut every client of the node.
MAX_SUBJECT_TOKENS_CHARS = 1024


class Refusal(msgspec.Struct, frozen=True):
    """A stream request the edge answers with a JSON error instead of a stream."""

    status: int
    #: Label of the ``ofa_edge_rejected_streams`` metric.
    reason: str
    detail: str


class StreamRequest(msgspec.Struct, frozen=True):
    """What a client asked for, validated."""

    asset_uuid: str
    item_id: str | None
    #: The group of ``/group/<group>/asset_stream`` (used for authorisation), else None.
    group: str | None
    last_event_id: int | None
    snapshot: bool
    token: str | None

    @classmethod
    def parse(
        cls, request: Request[Any, Any, Any], node: EdgeNode, group: str | None
    ) -> StreamRequest | Refusal:
        """The request, or why it is refused (400/431), in the order the checks are cheap."""
        settings = node.settings
        header_bytes = sum(len(k) + len(v) for k, v in request.scope["headers"])
        if header_bytes > settings.max_header_bytes:
            return Refusal(
                431,
                "headers_too_large",
                f"request headers are {header_bytes} bytes; this edge accepts at most "
                f"{settings.max_header_bytes}",
            )
        q = request.query_params
        asset_uuid = q.get("asset_uuid")
        if not asset_uuid:
            return Refusal(400, "bad_request", "query parameter asset_uuid is required")
        item_id = q.get("id") or None
        encoded = len(encode_token(asset_uuid)) + len(encode_token(item_id or "-"))
        if encoded > MAX_SUBJECT_TOKENS_CHARS:
            return Refusal(
                400,
                "bad_request",
                "asset_uuid and id are too long for a NATS subject "
                f"(at most {MAX_SUBJECT_TOKENS_CHARS} characters once encoded)",
            )
        raw_id = request.headers.get("last-event-id") or q.get("last_event_id")
        last_event_id = parse_last_event_id(raw_id)
        if isinstance(last_event_id, Refusal):
            return last_event_id
        return cls(
            asset_uuid=asset_uuid,
            item_id=item_id,
            group=group,
            last_event_id=last_event_id,
            snapshot=(q.get("snapshot") or "").lower() in ("1", "true", "yes"),
            token=find_token(request, node.auth_settings.token_cookie)[0],
        )


def parse_last_event_id(raw: str | None) -> int | Refusal | None:
    """The event id a client resumes after (None: start fresh), or a 400 refusal."""
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    # isascii: str.isdigit() also accepts digits such as '²' that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return Refusal(
            400,
            "bad_request",
            f"Last-Event-ID {raw[:40]!r} is not an event id of this service "
            "(a non-negative integer); reconnect without it to start fresh",
        )
    return int(raw)


def admit(node: EdgeNode, req: StreamRequest) -> Refusal | None:
    """Why ``node`` does not take this stream now (401/403/503), or None."""
    try:
        node.auth.check(req.token, req.asset_uuid, req.group)
    except AuthError as exc:
        reason = "unauthorized" if exc.status == 401 else "forbidden"
        return Refusal(exc.status, reason, exc.detail)
    if node.closing:
        return Refusal(503, "closing", "edge is shutting down; connect to another edge")
    if not node.serving:
        return Refusal(503, "nats_down", "edge has no NATS connection; try another edge")
    limit = node.settings.max_connections
    if node.streams >= limit:
        return Refusal(503, "full", f"edge is at its limit of {limit} streams")
    if not node.limiter.allow():
        return Refusal(503, "rate", "edge is accepting new streams too fast; retry shortly")
    return None


async def stream_session(
    node: EdgeNode, req: StreamRequest, transport: Any, cycle: Any = None
) -> AsyncIterator[bytes]:
    """The body of one admitted stream, from the ``retry:`` line to its closing comment.

    ``cycle`` is uvicorn's request cycle (see :class:`edge.sse.DirectWriter`): with it, live
    frames for an idle stream are written straight to the socket instead of through this
    generator."""
    s = node.settings
    hub = node.hub
    assert hub is not None
    watchdog = CloseWatchdog(transport, s.close_grace_s)
    item_token = encode_token(req.item_id) if req.item_id else None
    client = Client(item_token, s.client_queue_bytes, _on_cut(node, watchdog))
    feed: AssetFeed | None = None
    node.streams += 1
    try:
        try:
            feed = await hub.acquire(req.asset_uuid)
        except Exception as exc:
            yield sse.comment(f"edge cannot subscribe to the asset: {exc}; reconnect")
            return
        hub.attach(feed, client)
        # Sent once the live subscription is confirmed: every event stored after the client
        # saw this line reaches it.
        yield sse.retry_frame(s.retry_ms)
        if req.snapshot and (state := await _snapshot(node, req)) is not None:
            yield sse.named_frame("asset_state", state)
        async for frames in _replay_frames(node, feed, client, req.last_event_id):
            yield frames
        # The response has started (retry: went out), so uvicorn's framing is known from here on.
        client.writer = sse.DirectWriter.of(cycle)
        async for frames in _live_frames(client, s.ping_interval_s, node.metrics.lag.observe):
            yield frames
    except HistoryError as exc:
        log.warning("history replay failed: %s", exc, extra={"asset": req.asset_uuid})
        yield sse.comment(f"history unavailable ({exc}); reconnect")
    finally:
        watchdog.disarm()
        node.streams -= 1
        if feed is not None:
            hub.release(feed, client)


def _on_cut(node: EdgeNode, watchdog: CloseWatchdog) -> Callable[[], None]:
    def on_cut() -> None:
        node.metrics.slow_cuts.inc()
        watchdog.arm()

    return on_cut


async def _snapshot(node: EdgeNode, req: StreamRequest) -> bytes | None:
    try:
        return await snapshot_json(await node.state_reader(), req.asset_uuid, req.item_id)
    except Exception:
        node.forget_state_reader()
        raise


async def _replay_frames(
    node: EdgeNode, feed: AssetFeed, client: Client, last_event_id: int | None
) -> AsyncIterator[bytes]:
    """The reset event (if any) and the history after ``last_event_id``; ends the client's
    replay (live frames held meanwhile follow without gap or duplicate)."""
    if last_event_id is None:
        client.end_replay(0)
        return
    node.metrics.resumes.inc()
    filt = feed.stream_filter(client.item_token)
    start, reset = await _plan(node, filt, last_event_id)
    if reset is not None:
        node.metrics.resets.labels(reset.reason).inc()
        yield sse.named_frame("reset", msgspec.json.encode(reset))
    if start is None:
        client.end_replay(0)
        return
    async for frames in _history_frames(node, filt, start, client):
        yield frames


async def _plan(node: EdgeNode, filt: str, last_event_id: int) -> tuple[int | None, Reset | None]:
    assert node.planner is not None
    try:
        return await node.planner.plan(filt, last_event_id)
    except Exception as exc:  # NATS timeout or error: the client retries later
        raise HistoryError(f"cannot read the stream state: {exc}") from exc


async def _history_frames(
    node: EdgeNode, filt: str, start: int, client: Client
) -> AsyncIterator[bytes]:
    """Stored events from ``start`` on, in chunks of about ``_REPLAY_CHUNK`` bytes; then ends
    the client's replay at the last one sent."""
    s = node.settings
    last = start - 1
    chunk: list[bytes] = []
    size = 0
    assert node.nc is not None
    stored = replay(node.nc, node.layout.stream, filt, start, timeout=s.history_timeout_s)
    async with contextlib.aclosing(stored):
        async for m in stored:
            chunk.append(sse.event_frame(m.seq, m.data))
            size += len(chunk[-1])
            last = m.seq
            node.metrics.history_events.inc()
            if size < _REPLAY_CHUNK:
                continue
            yield b"".join(chunk)
            chunk, size = [], 0
            if client.closed is not None:
                break
    if chunk:
        yield b"".join(chunk)
    client.end_replay(last)


async def _live_frames(
    client: Client, ping_s: float, observe: Callable[[float], None]
) -> AsyncIterator[bytes]:
    """Whatever the fan-out queued for the client (one chunk per wake-up), a ping comment when
    idle, and the reason once the client is closed."""
    while True:
        if client.queue:
            queued_at = client.queued_at
            data = client.take()
            yield data
            observe(time.monotonic() - queued_at)
            continue
        if client.closed is not None:
            yield sse.comment(client.closed)
            return
        client.wakeup.clear()
        client.parked = True  # nothing queued, nothing in flight: live frames go direct
        try:
            async with asyncio.timeout(ping_s):
                await client.wakeup.wait()
        except TimeoutError:
            client.parked = False
            yield sse.comment("ping")
        finally:
            client.parked = False
