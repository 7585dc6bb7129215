"""A frame larger than the per-client queue bound (issue 13, item 7).

The contract accepts records of up to 1 MiB while a client may queue 256 KiB: the bound leaves
out the largest queued frame, so such a record reaches every client that reads, and a client
that does not read is still cut.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import msgspec
import pytest

from edge import sse
from edge.fanout import Client
from ofa_contract.events import DEFAULT_MAX_RECORD_BYTES, TooLarge, decode_record
from ofa_contract.layout import NatsHeaders
from tests.edge.procs import EdgeProcess
from tests.edge.publisher import Publisher
from tests.edge.sse_client import SSEConnection, sse_get
from tests.edge.test_stream import wait_subscribed

LIMIT = 256 * 1024
ASSET = "BIG-FRAME-1"
CLIENTS = 30


def _largest_record(n: int) -> bytes:
    """A record of exactly the largest size the contract accepts."""
    head = msgspec.json.encode({"ID": "blob", "n": n, "VALUE": ""})
    pad = DEFAULT_MAX_RECORD_BYTES - len(head)
    rec = msgspec.json.encode({"ID": "blob", "n": n, "VALUE": "x" * pad})
    assert len(rec) == DEFAULT_MAX_RECORD_BYTES
    return rec


def test_the_test_record_is_the_largest_the_contract_accepts() -> None:
    rec = _largest_record(1)
    assert decode_record(ASSET.encode(), rec).raw == rec
    with pytest.raises(TooLarge):
        decode_record(ASSET.encode(), rec[:-1] + b" }")


def _client(on_cut: list[str]) -> Client:
    c = Client(None, LIMIT, lambda: on_cut.append("cut"))
    c.end_replay(0)
    return c


def test_one_frame_larger_than_the_bound_is_queued() -> None:
    cuts: list[str] = []
    c = _client(cuts)
    big = sse.event_frame(1, _largest_record(1))
    assert c.push(1, "blob", big)
    assert c.push(2, "a", b"x" * 1000)  # ordinary frames still fit beside it
    assert not cuts and c.take() == big + b"x" * 1000


def test_a_big_frame_behind_small_ones_is_queued() -> None:
    cuts: list[str] = []
    c = _client(cuts)
    for seq in range(1, 51):
        assert c.push(seq, "a", b"y" * 1000)
    assert c.push(51, "blob", sse.event_frame(51, _largest_record(1)))
    assert not cuts


def test_the_bound_still_applies_beside_the_largest_frame() -> None:
    cuts: list[str] = []
    c = _client(cuts)
    assert c.push(1, "blob", sse.event_frame(1, _largest_record(1)))
    # A second big frame while the first is still queued: the client is not reading.
    assert not c.push(2, "blob", sse.event_frame(2, _largest_record(2)))
    assert cuts == ["cut"] and c.closed is not None and "too slow" in c.closed
    cuts.clear()
    c = _client(cuts)
    assert c.push(1, "blob", sse.event_frame(1, _largest_record(1)))
    n = 1
    while c.closed is None:  # ordinary frames up to the bound beside the big one, then cut
        n += 1
        c.push(n, "a", b"z" * 1000)
    assert cuts == ["cut"] and (n - 2) * 1000 <= LIMIT < (n - 1) * 1000


def test_a_big_frame_arriving_during_replay_is_held() -> None:
    cuts: list[str] = []
    c = Client(None, LIMIT, lambda: cuts.append("cut"))  # replaying until end_replay
    big = sse.event_frame(5, _largest_record(5))
    assert c.push(4, "a", b"a" * 100) and c.push(5, "blob", big)
    assert not cuts
    c.end_replay(4)  # seq 4 came from the history replay
    assert c.take() == big and not cuts
    c2 = Client(None, LIMIT, lambda: cuts.append("cut"))
    c2.push(1, "blob", big)
    c2.push(2, "blob", sse.event_frame(2, _largest_record(2)))
    assert cuts == ["cut"]


async def _metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(url + "/metrics")).text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def _publish_round(pub: Publisher, n: int) -> tuple[list[int], int, bytes]:
    """Small events around the largest record, all at once: the big frame lands in queues that
    already hold others. Returns the stored sequences (in stream order), the big record's
    sequence and the big record."""
    big = _largest_record(n)
    small = [msgspec.json.encode({"ID": f"s{i}", "VALUE": n}) for i in range(4)]
    bodies = [("s0", small[0]), ("s1", small[1]), ("blob", big), ("s2", small[2])]
    bodies.append(("s3", small[3]))
    acks = await asyncio.gather(
        *(
            pub.js.publish(
                pub.layout.stream_subject(ASSET, item),
                data,
                headers={NatsHeaders.MSG_ID: f"big:{n}:{item}"},
            )
            for item, data in bodies
        )
    )
    return sorted(int(a.seq) for a in acks), int(acks[2].seq), big


async def test_largest_record_reaches_many_reading_clients_and_a_stuck_one_is_cut(
    nats_private, tmp_path
) -> None:
    pub = await Publisher.connect(nats_private.url)
    edge = EdgeProcess(nats_private.url, tmp_path)
    await edge.start()
    try:
        url = f"{edge.url}/asset_stream?asset_uuid={ASSET}"
        assert await _metric(edge.url, "ofa_edge_slow_client_cuts_total") == 0
        readers: list[SSEConnection] = list(
            await asyncio.gather(*(sse_get(url) for _ in range(CLIENTS)))
        )
        stuck = await sse_get(url, rcvbuf=4096)  # connected, subscribed, never reads again
        await asyncio.gather(*(wait_subscribed(c) for c in [*readers, stuck]))
        sent: list[int] = []
        bigs: dict[int, bytes] = {}
        got: list[list[int]] = [[] for _ in readers]
        rounds = 0
        # Rounds until the stuck client is cut (it holds a frame, its kernel buffers fill, then
        # its queue exceeds the bound beside the largest frame); each round waits for every
        # reader, as a reading client would keep up.
        while await _metric(edge.url, "ofa_edge_slow_client_cuts_total") == 0:
            rounds += 1
            assert rounds <= 16, "a client that never reads was not cut"
            seqs, big_seq, big = await _publish_round(pub, rounds)
            sent += seqs
            bigs[big_seq] = big
            n = len(seqs)
            per_client = await asyncio.gather(
                *(c.events_until(lambda e, n=n: len(e) >= n, timeout=60) for c in readers)
            )
            for mine, events in zip(got, per_client, strict=True):
                mine.extend(int(e.id) for e in events)
                for e in events:
                    if int(e.id) in bigs:
                        assert e.data.encode() == bigs[int(e.id)]
        for mine in got:
            assert mine == sent  # every event, in order, nothing twice
        assert (
            await _metric(edge.url, "ofa_edge_slow_client_cuts_total") == 1
        )  # only the stuck client
        for c in readers:
            assert not any("too slow" in text for text in c.parser.comments)
        # The stuck client's connection ends (told, then dropped after the grace period).
        rest = await stuck.drain_to_end(timeout=30)
        ids = [int(e.id) for e in rest]
        assert ids == sent[: len(ids)] and len(ids) < len(sent)
        await asyncio.gather(*(c.close() for c in [*readers, stuck]))
    finally:
        await edge.stop()
        await pub.close()
