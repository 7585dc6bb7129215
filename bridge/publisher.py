"""Pipelined JetStream publishing with a bounded window and safe retries.

Why not nats-py's auto-reconnect: after a reconnect it re-sends its buffered (not yet written)
publishes while earlier ones written to the dead socket are lost, so a later record could be
stored before an earlier one. Instead this publisher owns its connection (no auto-reconnect):
within one TCP connection the server stores a prefix of what was sent, so after any fault
(disconnect, error ack, ack timeout) it drops the connection, reconnects with back-off and
re-sends every un-acked record of every partition in offset order with the same Nats-Msg-Id;
the stream's duplicate window drops those that were stored already, and order is kept.

One un-acknowledged record per asset: "the server stores a prefix of what one connection sent"
does not hold on a cluster. A publish travels from the connection's server to the stream leader;
when the leader is cut off, the publishes on their way to it are stuck there while the other
nodes elect a new leader, and the publishes sent after the election are stored at once. The
stuck ones were re-sent only after the ack timeout, so the stream held an asset's records ~10 s
out of order (the cluster fault test: SSE ids rising while the asset's seqs fell). So a record
is sent only once the previous record of its asset is acknowledged; records of different
assets still fill the window (the order promise is per asset, docs/decisions.md). The window
bounds the publishes in flight; the records held behind their asset's have their own bound, so
that a backlog of a few assets (a catch-up after a Kafka fault) cannot fill the window with held
records and keep every other asset waiting behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bridge.metrics import BridgeMetrics
from bridge.tracker import Entry
from ofa_contract.compat import nats_send_raw
from ofa_contract.runtime import Backoff, cancel_and_wait, get_logger
from ofa_contract.runtime.connect import ReconnectPolicy, connect_nats

log = get_logger("bridge", __name__)

#: nats-server writes ``"duplicate": true`` (with a space) into the ack of a publish it dropped
#: as a duplicate; match the field, not one spelling of it.
_DUPLICATE = re.compile(rb'"duplicate"\s*:\s*true')

OnConnect = Callable[[JetStreamContext], Awaitable[None]]
#: Called with (entry, duplicate) once JetStream acknowledged an entry; may return a core NATS
#: (subject, payload) to publish right away on the same connection (OpenFactory's layout).
OnAck = Callable[[Entry, bool], tuple[str, bytes] | None]


def encode_headers(headers: dict[str, str]) -> bytes:
    """The NATS header block for ``headers`` (keys/values must already be valid)."""
    return ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


async def _hpub(nc: Client, entry: Entry, reply: str) -> None:
    """Send one HPUB with the entry's pre-encoded header block (built once per record; see
    :func:`ofa_contract.compat.nats_send_raw` for why not ``publish``)."""
    if nc.is_closed or not nc.is_connected:
        raise ConnectionError("NATS connection is not open")
    hdr = entry.headers
    payload = entry.payload
    cmd = (
        f"HPUB {entry.subject} {reply} {len(hdr)} {len(hdr) + len(payload)}\r\n".encode()
        + hdr
        + payload
        + b"\r\n"
    )
    await nats_send_raw(nc, cmd)


class Publisher:
    """Sends entries to JetStream, routes acks back, and recovers from any NATS fault."""

    def __init__(
        self,
        url: str,
        *,
        window: int,
        max_held: int,
        ack_timeout: float,
        backoff: Backoff,
        metrics: BridgeMetrics,
        on_ack: OnAck,
        unacked: Callable[[], Iterable[Entry]],
        on_connect: OnConnect,
        name: str = "ofa-bridge",
    ) -> None:
        self._url = url
        self._window = window
        self._max_held = max_held
        self._ack_timeout = ack_timeout
        self._backoff = backoff
        self._metrics = metrics
        self._on_ack = on_ack
        self._unacked = unacked
        self._on_connect = on_connect
        self._name = name
        self._nc: Client | None = None
        self._prefix = ""
        self._token = 0
        self._inflight: dict[int, Entry] = {}
        #: Assets with a record in flight, and their later records waiting for its ack.
        self._waiting: dict[str, deque[Entry]] = {}
        self._held = 0
        self._resending = False
        # Read at scrape time: exact, and nothing to keep up to date on the hot path.
        metrics.in_flight.set_function(lambda: len(self._inflight))
        self._connected = False
        self._space = asyncio.Event()
        self._fault = asyncio.Event()
        self._fault_reason = ""
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.last_error = "not connected yet"

    # -- public API -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while publishing is possible (connected, stream checked, resend done)."""
        return self._connected

    def has_space(self) -> bool:
        """True when :meth:`submit` may be called without exceeding the window or the bound
        on held records."""
        return self._connected and not self._resending and self._room()

    def _room(self) -> bool:
        """Room for one more record: a publish slot, and room among the held records."""
        return len(self._inflight) < self._window and self._held < self._max_held

    def _pending(self) -> int:
        """Records submitted and not acknowledged: in flight, or held behind their asset's."""
        return len(self._inflight) + self._held

    async def wait_space(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until :meth:`has_space`; return whether it is."""
        if self.has_space():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._space.wait(), timeout)
        return self.has_space()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight (or ``timeout``); True when idle and connected.

        Returns at once while disconnected: what was not acknowledged then is re-sent by the
        next owner (same Nats-Msg-Id), and a stop must not wait for NATS to come back.
        """
        deadline = time.monotonic() + timeout
        while self._pending() and self._connected and not self._closing:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        return not self._pending() and self._connected

    def start(self) -> None:
        """Start the connection supervisor (connects, reconnects, resends)."""
        self._task = asyncio.create_task(self._supervise(), name="bridge-publisher")

    async def close(self) -> None:
        """Stop the supervisor and close the connection (un-acked entries stay un-acked)."""
        self._closing = True
        self._fault.set()
        await cancel_and_wait(self._task)
        await self._teardown()

    async def submit(self, entry: Entry) -> None:
        """Publish ``entry``; the caller checked :meth:`has_space`. Never raises: a failure
        resets the connection and the entry is re-sent from its tracker after the reconnect."""
        if self._nc is None or not self._connected:
            return  # re-sent from the tracker once connected
        await self._send_or_hold(entry)
        if not self._room():
            self._space.clear()

    async def _send_or_hold(self, entry: Entry) -> None:
        """Send ``entry`` unless a record of its asset is in flight (then it waits for that
        one's ack, see the module docstring)."""
        key = entry.asset or entry.subject
        queue = self._waiting.get(key)
        if queue is not None:
            queue.append(entry)
            self._held += 1
            return
        self._waiting[key] = deque()
        await self._send(entry)

    async def _send(self, entry: Entry) -> None:
        nc = self._nc
        if nc is None:
            return  # torn down meanwhile: re-sent from the tracker once connected
        self._token += 1
        token = self._token
        self._inflight[token] = entry
        entry.sent_at = time.perf_counter()
        try:
            await _hpub(nc, entry, f"{self._prefix}{token}")
        except Exception as exc:
            self._trigger_fault(f"publish failed: {type(exc).__name__}: {exc}", "publish_error")

    async def _send_next(self, entry: Entry) -> None:
        """``entry`` is stored: send the next record of its asset, if one waits."""
        key = entry.asset or entry.subject
        queue = self._waiting.get(key)
        # A released partition's records stay un-acked and its next owner re-sends them from
        # the committed offset; a late copy sent from here could be stored before them. A
        # partition still draining its revocation is owned: its held records must go out, or
        # the drain waits for acks that never come and holds the rebalance up.
        while queue and queue[0].tracker.released:
            queue.popleft()
            self._held -= 1
        if not queue:
            self._waiting.pop(key, None)
            return
        self._held -= 1
        await self._send(queue.popleft())

    # -- internals --------------------------------------------------------------------------

    def _trigger_fault(self, reason: str, kind: str) -> None:
        if self._connected:
            log.warning("NATS fault, resetting the connection: %s", reason)
            self._metrics.resets.labels(kind).inc()
        self._connected = False
        self.last_error = reason
        self._fault_reason = reason
        self._space.clear()
        self._fault.set()

    async def _handle_ack(self, msg: Msg) -> None:
        nc = self._nc
        try:
            token = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        entry = self._inflight.pop(token, None)
        if entry is None:
            return  # an ack from before a reset: the entry was re-sent and is tracked anew
        data = msg.data
        if not data or b'"error"' in data or not data.startswith(b"{"):
            # No responders (empty 503 status message) or a JetStream error: not stored.
            status = (msg.headers or {}).get("Status", "") if msg.headers else ""
            self._trigger_fault(
                f"publish of {entry.subject} not stored: {data[:200]!r} {status}", "error_ack"
            )
            return
        self._metrics.publish_latency.observe(time.perf_counter() - entry.sent_at)
        follow_up = self._on_ack(entry, _DUPLICATE.search(data) is not None)
        if follow_up is not None:
            await self._publish_core(*follow_up)
        # Only on the connection the ack came on: after a reset the resend owns the order.
        if self._connected and self._nc is nc:
            await self._send_next(entry)
        if self._connected and self._room():
            self._space.set()

    async def _publish_core(self, subject: str, payload: bytes) -> None:
        """Publish a core NATS message on the JetStream connection, from the ack handler.

        Acks are handled one at a time in arrival order, so these publishes leave in the order
        the stream stored the records. A failure (the connection is going away) loses the
        message for core subscribers only; the stream has the record.
        """
        nc = self._nc
        try:
            if nc is None:
                raise ConnectionError("not connected")
            await nc.publish(subject, payload)
        except Exception as exc:
            self._metrics.openfactory_errors.inc()
            log.debug("OpenFactory-layout publish to %s failed: %s", subject, exc)
            return
        self._metrics.openfactory_published.inc()

    async def _on_disconnected(self) -> None:
        if not self._closing:
            self._trigger_fault("disconnected from NATS", "disconnect")

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.debug("NATS client error: %s", self.last_error)

    async def _connect(self) -> None:
        nc = await connect_nats(
            self._url,
            self._name,
            # No client-side reconnect: this class reconnects and re-sends (module docstring).
            policy=ReconnectPolicy.NONE,
            log=log,
            disconnected_cb=self._on_disconnected,
            closed_cb=self._on_disconnected,
            error_cb=self._on_error,
        )
        try:
            inbox = nc.new_inbox()
            self._prefix = f"{inbox}."
            await nc.subscribe(f"{inbox}.*", cb=self._handle_ack)
            await self._on_connect(nc.jetstream())
            await nc.flush(timeout=5)
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc = nc

    async def _teardown(self) -> None:
        nc, self._nc = self._nc, None
        self._connected = False
        self._inflight.clear()
        # The tracker still has every un-acked record: _resend sends them again in order.
        self._waiting.clear()
        self._held = 0
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)

    async def _resend(self) -> None:
        """Send every un-acked entry again (per partition in offset order), same Msg-Id."""
        nc = self._nc
        assert nc is not None
        count = 0
        for entry in list(self._unacked()):
            await self._send_or_hold(entry)
            count += 1
        if count:
            self._metrics.resent.inc(count)
            log.info("re-sent %d un-acked records after reconnecting", count)
        await nc.flush(timeout=10)

    async def _supervise(self) -> None:
        # Waits since the last successful connect: each one doubles the next (up to the cap).
        waits = 0
        failures = 0
        while not self._closing:
            self._fault.clear()
            try:
                await self._connect()
                self._connected = True
                # No submit while re-sending: a new record would leave before the re-sent
                # earlier ones of its asset.
                self._resending = True
                try:
                    await self._resend()
                finally:
                    self._resending = False
            except Exception as exc:
                self._connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                failures += 1
                waits += 1
                delay = self._backoff.delay(waits)
                # Attempts 1, 2, 4, 8...: one line at first, fewer the longer it lasts.
                level = logging.WARNING if failures & (failures - 1) == 0 else logging.DEBUG
                log.log(
                    level,
                    "waiting for NATS at %s (NATS_URL): %s; retrying in %.1fs",
                    self._url,
                    self.last_error,
                    delay,
                    extra={"variable": "NATS_URL", "attempt": failures},
                )
                await self._teardown()
                await asyncio.sleep(delay)
                continue
            if self._fault.is_set():
                # A fault during the resend: go round again.
                await self._teardown()
                continue
            waits = 0
            failures = 0
            self.last_error = ""
            log.info("connected to NATS at %s", self._url)
            if self._room():
                self._space.set()
            await self._watch()
            await self._teardown()
            if not self._closing:
                waits += 1
                await asyncio.sleep(self._backoff.delay(waits))

    async def _watch(self) -> None:
        """While connected: watch for faults and for acks that take too long."""
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fault.wait(), 0.25)
            if self._fault.is_set():
                return
            if self._held and not self._inflight:
                # Records wait for an ack that cannot come: never expected, but silence here
                # would stop their assets for good, so reset and re-send.
                self._trigger_fault(f"{self._held} records held with none in flight", "stuck")
                return
            if self._inflight:
                oldest = next(iter(self._inflight.values()))
                if time.perf_counter() - oldest.sent_at > self._ack_timeout:
                    self._trigger_fault(
                        f"no ack within {self._ack_timeout}s for {oldest.subject}", "ack_timeout"
                    )
                    return
