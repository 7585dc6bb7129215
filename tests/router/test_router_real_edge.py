"""The router in front of the real edge (edge.main) on a real JetStream stream."""

from __future__ import annotations

import asyncio

import httpx
import jwt
import msgspec
import pytest

from compose.local_infra import NatsProcess
from ofa_contract.auth import AuthSettings
from tests.helpers import Endpoints
from tests.router.harness import real_edge_stack
from tests.sse import SseEvent, SseParser


async def collect(
    c: httpx.AsyncClient, url: str, n: int, headers: dict[str, str] | None = None
) -> list[SseEvent]:
    """Open an SSE stream and return its first ``n`` asset_update events."""
    parser = SseParser()
    events: list[SseEvent] = []
    async with c.stream("GET", url, headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")

        async def run() -> None:
            async for chunk in resp.aiter_raw():
                events.extend(e for e in parser.feed(chunk) if e.event == "asset_update")
                if len(events) >= n:
                    return

        await asyncio.wait_for(run(), 15)
    return events[:n]


GROUP = "Halle Süd/2"


@pytest.mark.parametrize("mode", ["redirect", "proxy"])
async def test_stream_and_resume_through_router(
    infra: Endpoints, nats_private: NatsProcess, unique: str, mode: str
) -> None:
    # A free-text group name with a "/" (issue 11): the edge path carries it encoded.
    stack_cm = real_edge_stack(infra.kafka, nats_private.url, unique, "R-1", GROUP, mode=mode)
    async with stack_cm as (stack, pub), httpx.AsyncClient(follow_redirects=True, timeout=10) as c:
        seqs = [await pub.publish("R-1", "Temp", i) for i in range(5)]
        await pub.publish("OTHER", "Temp", 99)
        url = f"{stack.url}/asset_stream?asset_uuid=R-1&last_event_id=0"
        first = await collect(c, url, 3)
        assert [int(e.id or 0) for e in first] == seqs[:3]
        assert msgspec.json.decode(first[0].data)["VALUE"] == 0
        # Reconnect as EventSource does: same URL, Last-Event-ID header.
        rest = await collect(c, url, 2, headers={"Last-Event-ID": first[-1].id or ""})
        assert [int(e.id or 0) for e in rest] == seqs[3:]
        # id= filter through the router on a lower-case (MTConnect) record
        seq = await pub.publish("R-1", "avail", "AVAILABLE", upper=False)
        only = await collect(
            c, f"{stack.url}/asset_stream?asset_uuid=R-1&id=avail&last_event_id=0", 1
        )
        assert [int(e.id or 0) for e in only] == [seq]
        groups = (await c.get(f"{stack.url}/groups")).json()["groups"]
        assert [g["group"] for g in groups] == [GROUP]


@pytest.mark.parametrize("mode", ["redirect", "proxy"])
async def test_group_claim_matches_the_decoded_group_on_the_edge(
    infra: Endpoints, nats_private: NatsProcess, unique: str, mode: str
) -> None:
    """The edge authorises on the group it decodes from the path: a token allowing only the
    group ``Halle Süd/2`` streams through router and edge; one for another group does not."""
    key = "s3cret-key-for-tests-0123456789abcdef"
    auth = AuthSettings(secret=key)
    allowed = jwt.encode({"groups": [GROUP]}, key, algorithm="HS256")
    other = jwt.encode({"groups": ["WC1"]}, key, algorithm="HS256")
    stack_cm = real_edge_stack(
        infra.kafka, nats_private.url, unique, "R-2", GROUP, {"auth": auth}, mode=mode, auth=auth
    )
    async with stack_cm as (stack, pub), httpx.AsyncClient(follow_redirects=True, timeout=10) as c:
        seq = await pub.publish("R-2", "Temp", 1)
        url = f"{stack.url}/asset_stream?asset_uuid=R-2&last_event_id=0"
        got = await collect(c, url, 1, headers={"Authorization": f"Bearer {allowed}"})
        assert [int(e.id or 0) for e in got] == [seq]
        r = await c.get(url, headers={"Authorization": f"Bearer {other}"})
        assert r.status_code == 403 and "detail" in r.json()
