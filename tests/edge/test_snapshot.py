"""``snapshot=true`` renders values as the router's ``/asset_state`` does (one shaping, in
``ofa_contract.asset_state``): non-string values as JSON text, and nothing for unknown items."""

from __future__ import annotations

import json

from compose.local_infra import NatsProcess
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.sse_client import sse_get
from tests.edge.test_stream import wait_subscribed
from tests.support.wait import wait_until


async def test_snapshot_renders_json_text_and_omits_unknown_items(
    nats_private: NatsProcess,
) -> None:
    pub = await Publisher.connect(nats_private.url)
    try:
        await pub.publish("SNAP-1", "Flag", True)
        await pub.publish("SNAP-1", "Temp", 21.5)
        async with running_edge(nats_private.url) as edge:
            c = await sse_get(f"{edge.url}/asset_stream?asset_uuid=SNAP-1&snapshot=true")
            ev = await c.next_event()
            assert ev is not None and ev.type == "asset_state"
            items = {d["id"]: d["value"] for d in json.loads(ev.data)["dataItems"]}
            assert items == {"Flag": "true", "Temp": "21.5"}  # was "True" on the edge
            await c.close()
            # An unknown item: no asset_state event; the first event is the live one.
            one = await sse_get(f"{edge.url}/asset_stream?asset_uuid=SNAP-1&id=Nope&snapshot=1")
            await wait_subscribed(one)
            seq = await pub.publish("SNAP-1", "Nope", "now known")
            ev = await one.next_event()
            assert ev is not None and ev.type == "asset_update" and int(ev.id) == seq
            await one.close()
            # An unknown asset: an empty list of items.
            empty = await sse_get(f"{edge.url}/asset_stream?asset_uuid=NONE-1&snapshot=true")
            ev = await empty.next_event()
            assert ev is not None and ev.type == "asset_state"
            assert json.loads(ev.data) == {"asset_uuid": "NONE-1", "dataItems": []}
            await empty.close()
    finally:
        await pub.close()


async def _snapshot_items(edge_url: str, asset: str) -> dict[str, str]:
    c = await sse_get(f"{edge_url}/asset_stream?asset_uuid={asset}&snapshot=true")
    try:
        ev = await c.next_event()
        assert ev is not None and ev.type == "asset_state"
        return {d["id"]: d["value"] for d in json.loads(ev.data)["dataItems"]}
    finally:
        await c.close()


async def test_snapshot_reader_is_opened_once_and_reopened_after_a_reconnect(
    nats_private: NatsProcess,
) -> None:
    pub = await Publisher.connect(nats_private.url)
    try:
        await pub.publish("SNAP-2", "Temp", 1)
    finally:
        await pub.close()
    async with running_edge(nats_private.url) as edge:
        node = edge.state
        assert await _snapshot_items(edge.url, "SNAP-2") == {"Temp": "1"}
        first = node._state_reader
        assert first is not None
        assert await _snapshot_items(edge.url, "SNAP-2") == {"Temp": "1"}
        assert node._state_reader is first  # the bucket was not opened again
        nats_private.stop()
        nats_private.start()
        await nats_private.wait_ready()
        await wait_until(
            lambda: node._state_reader is None and node.serving,
            timeout=30,
            what="the edge to reconnect and forget its asset_state reader",
        )
        pub = await Publisher.connect(nats_private.url)
        try:
            await pub.publish("SNAP-2", "Temp", 2)
        finally:
            await pub.close()
        assert await _snapshot_items(edge.url, "SNAP-2") == {"Temp": "2"}
        assert node._state_reader is not None and node._state_reader is not first
