"""SSE clients that follow one asset through the router and reconnect with Last-Event-ID
whenever their stream ends, recording what they saw for an exactly-once, in-order check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import msgspec

from tests.sse import SseParser


class _Attrs(msgspec.Struct):
    seq: int = 0


class _Rec(msgspec.Struct):
    attributes: _Attrs = msgspec.field(default_factory=_Attrs)


_dec = msgspec.json.Decoder(_Rec)


@dataclass
class Follower:
    """One client of one asset."""

    asset: str
    url: str
    #: Asset seq already produced when the first stream was confirmed live: every later one must
    #: arrive.
    connect_seq: int | None = None
    seqs: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    last_id: str = ""
    connects: int = 0
    resumes: int = 0
    resets: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    async def run(self, client: httpx.AsyncClient, produced: Callable[[str], int]) -> None:
        """Follow until cancelled; ``produced(asset)`` is the asset's latest generated seq."""
        while True:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            try:
                async with client.stream("GET", self.url, headers=headers) as resp:
                    if resp.status_code != 200:
                        self.refused[resp.status_code] = self.refused.get(resp.status_code, 0) + 1
                        await resp.aread()
                        await asyncio.sleep(0.2)
                        continue
                    self.connects += 1
                    if self.last_id:
                        self.resumes += 1
                    parser = SseParser()
                    async for chunk in resp.aiter_raw():
                        for ev in parser.feed(chunk):
                            self._event(ev.event, ev.data, ev.id)
                        if self.connect_seq is None and parser.retry is not None:
                            # The edge sends retry: once its live subscription is confirmed.
                            self.connect_seq = produced(self.asset)
            except (httpx.HTTPError, OSError) as exc:
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
            await asyncio.sleep(0.05)

    def _event(self, kind: str, data: str, sse_id: str | None) -> None:
        if kind == "reset":
            self.resets.append(data)
            return
        if kind != "asset_update":
            return
        self.seqs.append(_dec.decode(data).attributes.seq)
        if sse_id:
            self.ids.append(int(sse_id))
            self.last_id = sse_id


@dataclass
class Verdict:
    """What one follower got wrong (empty lists = right)."""

    asset: str
    duplicates: list[int]
    missing: list[int]
    out_of_order: list[tuple[int, int]]
    id_regressions: list[tuple[int, int]]


def check(
    f: Follower, final_seq: int, group_changes: list[int], stored: dict[int, int] | None = None
) -> Verdict:
    """Every seq after ``connect_seq`` up to ``final_seq`` exactly once and in order; SSE ids
    strictly increasing.

    ``group_changes`` are the seqs from which the asset's records went to another derived topic
    (its first group record, which moves it out of the default group, and any later move): order
    is checked within each such segment, because the design promises order per derived topic and
    none across them (splitter/engine.py, "Regrouping and order").

    A seq up to ``connect_seq`` was produced before the client was live: it may have been stored
    before the live subscription (not delivered) or after it (delivered). Only within one
    segment does a delivered seq prove that the later ones were stored after it too. Across
    segments it proves nothing: the first records of an asset (default group) were once bridged
    after its next ones (its workcenter's new topic, another bridge worker), so the client got
    seqs 1-3 live but not 4-6, stored before it went live, and this check reported 4-6 lost.
    ``stored`` (seq -> stream sequence, when known) closes what that leaves open: a seq stored
    after the first event the client received (its SSE id) was stored while it was live."""
    assert f.connect_seq is not None, f"{f.asset}: never connected"
    seen: dict[int, int] = {}
    for s in f.seqs:
        seen[s] = seen.get(s, 0) + 1
    dups = sorted(s for s, n in seen.items() if n > 1)

    def segment(s: int) -> int:
        return sum(1 for b in group_changes if s >= b)

    first_by_seg: dict[int, int] = {}
    for s in seen:
        seg = segment(s)
        first_by_seg[seg] = min(s, first_by_seg.get(seg, s))
    live_from = min(f.ids) if f.ids else None
    stored = stored or {}

    def due(s: int) -> bool:
        if s > f.connect_seq or s > first_by_seg.get(segment(s), s):
            return True
        return live_from is not None and stored.get(s, 0) > live_from

    missing = [s for s in range(1, final_seq + 1) if s not in seen and due(s)]
    disorder = []
    prev_by_seg: dict[int, int] = {}
    for s in f.seqs:
        seg = segment(s)
        p = prev_by_seg.get(seg)
        if p is not None and s <= p:
            disorder.append((p, s))
        prev_by_seg[seg] = s
    regress = [(a, b) for a, b in zip(f.ids, f.ids[1:], strict=False) if b <= a]
    return Verdict(f.asset, dups, missing, disorder, regress)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
