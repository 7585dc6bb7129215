"""Regression: an asset uuid or item id too long for a NATS subject is refused with 400 JSON.

Before the check, one request with a 5,000-character asset uuid made nats-server close the
edge's connection (protocol line over max_control_line): every other client stopped receiving
and the node stayed without NATS.
"""

from __future__ import annotations

import asyncio

import httpx

from compose.local_infra import NatsProcess
from edge.session import MAX_SUBJECT_TOKENS_CHARS
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import sse_get


async def test_too_long_names_are_refused_and_others_keep_streaming(
    nats_private: NatsProcess,
) -> None:
    pub = await Publisher.connect(nats_private.url)
    try:
        async with running_edge(nats_private.url) as edge:
            good = await sse_get(f"{edge.url}/asset_stream?asset_uuid=G-1")
            while good.parser.retry is None:
                assert await asyncio.wait_for(good.pump(), 10)
            long = "A" * 5000
            async with httpx.AsyncClient(base_url=edge.url, timeout=10) as c:
                for query in (
                    f"asset_uuid={long}",
                    f"asset_uuid=G-1&id={long}",
                    f"asset_uuid={'%C3%A9' * 200}",  # 200 chars, 1200 once encoded
                ):
                    r = await c.get(f"/asset_stream?{query}")
                    assert r.status_code == 400, (query[:40], r.status_code, r.text[:200])
                    assert "too long" in r.json()["detail"]
                # At the limit is still a valid asset.
                at_limit = "B" * (MAX_SUBJECT_TOKENS_CHARS - 1)
                ok = await sse_get(f"{edge.url}/asset_stream?asset_uuid={at_limit}")
                assert ok.status == 200
                while ok.parser.retry is None:
                    assert await asyncio.wait_for(ok.pump(), 10)
                await ok.close()
                seq = await pub.publish("G-1", "Temp", 1)
                ev = await good.next_event(10)
                assert ev is not None and int(ev.id) == seq
                r = await c.get("/ready")
                assert r.status_code == 200, r.text
            await good.close()
    finally:
        await pub.close()
