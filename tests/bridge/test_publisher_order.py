"""One un-acknowledged record per asset (pure logic: the wire is recorded, acks are scripted).

On a cluster, publishes stuck on their way to a stream leader that was cut off were stored after
later ones sent once a new leader was elected (the cluster fault test saw an asset's records
~10 s out of order in the stream). A record therefore leaves only once the previous record of
its asset is stored; other assets still fill the window; after a reset everything un-acked is
sent again under the same rule.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bridge import publisher as pub_mod
from bridge.metrics import BridgeMetrics
from bridge.publisher import Publisher
from bridge.tracker import Entry
from ofa_contract.runtime import Backoff


class _Msg:
    def __init__(self, subject: str, data: bytes) -> None:
        self.subject = subject
        self.data = data
        self.headers: dict[str, str] | None = None


class _Conn:
    is_closed = False
    is_connected = True

    async def flush(self, timeout: float = 0) -> None:
        return None


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(entry subject, reply token) of every publish, in the order they left."""
    sent: list[tuple[str, str]] = []

    async def hpub(nc: Any, entry: Entry, reply: str) -> None:
        sent.append((entry.subject, reply.rsplit(".", 1)[1]))

    monkeypatch.setattr(pub_mod, "_hpub", hpub)
    return sent


def _publisher(unacked: list[Entry], window: int = 10, max_held: int = 100) -> Publisher:
    p = Publisher(
        "nats://unused:4222",
        window=window,
        max_held=max_held,
        ack_timeout=10.0,
        backoff=Backoff(),
        metrics=BridgeMetrics(CollectorRegistry()),
        on_ack=lambda entry, duplicate: None,
        unacked=lambda: list(unacked),
        on_connect=lambda js: None,  # type: ignore[arg-type,return-value]
    )
    p._nc = _Conn()  # type: ignore[assignment]
    p._prefix = "_INBOX.t."
    p._connected = True
    return p


class _Tracker:
    active = True
    released = False


def _entry(asset: str, n: int, tracker: Any = None) -> Entry:
    return Entry(
        tracker=tracker or _Tracker(),
        offset=n,
        subject=f"ofa.asset.{asset}.item{n}",
        payload=b"{}",
        headers=b"NATS/1.0\r\n\r\n",
        asset=asset,
    )


async def _ack(p: Publisher, token: str, seq: int) -> None:
    await p._handle_ack(_Msg(f"_INBOX.t.{token}", b'{"stream":"S","seq":%d}' % seq))


async def test_a_record_leaves_only_after_its_assets_previous_one_is_stored(
    wire: list[tuple[str, str]],
) -> None:
    p = _publisher([])
    a1, a2, a3, b1 = _entry("A", 1), _entry("A", 2), _entry("A", 3), _entry("B", 1)
    for e in (a1, a2, b1, a3):
        await p.submit(e)
    # A's later records wait for a1's ack; B is not held up by A.
    assert [s for s, _ in wire] == [a1.subject, b1.subject]
    assert p._pending() == 4 and p.has_space()
    await _ack(p, wire[0][1], 1)
    assert [s for s, _ in wire] == [a1.subject, b1.subject, a2.subject]
    await _ack(p, wire[1][1], 2)  # B's ack releases nothing of A
    assert len(wire) == 3
    await _ack(p, wire[2][1], 3)
    assert [s for s, _ in wire][-1] == a3.subject
    await _ack(p, wire[3][1], 4)
    assert p._pending() == 0 and not p._waiting


async def test_held_records_do_not_fill_the_window(wire: list[tuple[str, str]]) -> None:
    # A catch-up backlog of one asset (a fault run saw 4-9 assets in flight of 20, the window
    # full of held records): the other assets still get publish slots.
    p = _publisher([], window=2)
    for n in range(1, 6):
        await p.submit(_entry("A", n))
    assert len(wire) == 1 and p.has_space()
    b1 = _entry("B", 1)
    await p.submit(b1)
    assert [s for s, _ in wire][-1] == b1.subject
    assert not p.has_space()  # two in flight: the window is full


async def test_held_records_have_their_own_bound(wire: list[tuple[str, str]]) -> None:
    p = _publisher([], window=10, max_held=2)
    for n in range(1, 4):
        await p.submit(_entry("A", n))
    assert len(wire) == 1 and not p.has_space()
    await _ack(p, wire[0][1], 1)  # a2 leaves, one held remains
    assert len(wire) == 2 and p.has_space()


async def test_after_a_reset_unacked_records_are_resent_one_per_asset_at_a_time(
    wire: list[tuple[str, str]],
) -> None:
    unacked = [_entry("A", 1), _entry("A", 2), _entry("B", 1)]
    p = _publisher(unacked)
    await p.submit(unacked[0])
    await p._teardown()
    assert p._pending() == 0 and not p._waiting
    p._nc = _Conn()  # type: ignore[assignment]
    p._connected = True
    wire.clear()
    await p._resend()
    assert [s for s, _ in wire] == [unacked[0].subject, unacked[2].subject]
    await _ack(p, wire[0][1], 1)
    assert wire[-1][0] == unacked[1].subject


async def test_held_records_of_a_released_partition_are_not_sent(
    wire: list[tuple[str, str]],
) -> None:
    # The next owner re-sends them from the committed offset: a late copy from the old owner
    # could be stored before the new owner's earlier records of the asset.
    released = _Tracker()
    p = _publisher([])
    for n in range(1, 4):
        await p.submit(_entry("A", n, released))
    b1, b2 = _entry("B", 1), _entry("B", 2)
    await p.submit(b1)
    await p.submit(b2)
    assert len(wire) == 2 and p._held == 3
    released.active = False
    released.released = True
    await _ack(p, wire[0][1], 1)  # A's first record stored: A's held ones are dropped
    assert len(wire) == 2 and "A" not in p._waiting
    await _ack(p, wire[1][1], 2)  # B's partition is still owned: b2 leaves
    assert wire[-1][0] == b2.subject and p._held == 0


async def test_held_records_of_a_partition_being_revoked_are_still_sent(
    wire: list[tuple[str, str]],
) -> None:
    # While the revocation drains, the partition is still this worker's: the drain waits for
    # every record's ack, so the held ones must go out (dropping them stalled each rebalance
    # for the whole drain timeout and cost the worker its group membership).
    revoking = _Tracker()
    p = _publisher([])
    for n in range(1, 4):
        await p.submit(_entry("A", n, revoking))
    assert len(wire) == 1 and p._held == 2
    revoking.active = False
    await _ack(p, wire[0][1], 1)
    assert len(wire) == 2 and p._held == 1
    await _ack(p, wire[1][1], 2)
    assert len(wire) == 3 and p._held == 0
