"""Regression: a new live feed delivered an asset's events out of order.

The feed noted the stream's last sequence, then subscribed. Messages stored in between were not
received live; each data item's missing messages were fetched only when that item's next live
message revealed them, after later messages of other items had gone out. A browser following the
asset saw sequence gaps and duplicates (tests/compose/test_dev.py, on a loaded machine).

The test stores a burst on several data items exactly inside that window (right after the
feed's stream-position lookup returns), then one more message per item, and requires the client
to receive every event in stream order.
"""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.manager import JetStreamManager

from compose.local_infra import NatsProcess
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import sse_get
from tests.edge.test_stream import wait_subscribed

ITEMS = ("a", "b", "c", "d")


async def test_new_feed_delivers_in_stream_order(
    nats_private: NatsProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = await Publisher.connect(nats_private.url)
    burst: list[int] = []
    armed = False
    real_stream_info = JetStreamManager.stream_info

    async def stream_info(self: JetStreamManager, name: str, *args: Any, **kw: Any) -> Any:
        nonlocal armed
        info = await real_stream_info(self, name, *args, **kw)
        if armed:
            armed = False
            for i in range(2):
                for item in ITEMS:
                    burst.append(await pub.publish("ORD", item, i))
        return info

    monkeypatch.setattr(JetStreamManager, "stream_info", stream_info)
    try:
        async with running_edge(nats_private.url) as edge:
            armed = True
            c = await sse_get(f"{edge.url}/asset_stream?asset_uuid=ORD")
            await wait_subscribed(c)
            assert len(burst) == 2 * len(ITEMS)  # the window really was hit
            after = [await pub.publish("ORD", item, 9) for item in ITEMS]
            got = await c.events_until(lambda e: after[-1] in [int(x.id) for x in e])
            ids = [int(e.id) for e in got]
            assert ids == sorted(set(ids)), f"out of order or repeated: {ids}"
            assert set(after) <= set(ids)  # stored after the client was told it is live
            assert set(ids) <= set(burst) | set(after)
            await c.close()
    finally:
        await pub.close()
