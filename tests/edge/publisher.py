"""Test-side publisher: creates the stream and publishes records the way the bridge does
(stream ``ofa.asset.>`` with RePublish to ``asset.>``, a duplicate window, ``Nats-Msg-Id``)."""

from __future__ import annotations

import itertools

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, RePublish, StreamConfig

from ofa_contract.streams import H_MSG_ID, state_key, stream_subject

_counter = itertools.count()


class Publisher:
    """Publishes asset records to a JetStream stream laid out as in ofa_contract.streams."""

    def __init__(self, nc: NatsClient, stream: str = "OFA_ASSETS") -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.stream = stream

    @classmethod
    async def connect(cls, url: str, stream: str = "OFA_ASSETS", **limits: int) -> Publisher:
        nc = await nats.connect(url)
        pub = cls(nc, stream)
        await pub.create_stream(**limits)
        return pub

    async def create_stream(self, **limits: int) -> None:
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=["ofa.asset.>"],
                republish=RePublish(src="ofa.asset.>", dest="asset.>"),
                duplicate_window=120.0,
                **limits,
            )
        )
        await self.js.create_key_value(KeyValueConfig(bucket="asset_state", history=1))

    async def publish(
        self, asset_uuid: str, item_id: str, value: object, upper: bool = True
    ) -> int:
        """Publish one record (OpenFactory upper-case keys or MTConnect lower-case); its seq."""
        if upper:
            rec = {
                "ID": item_id,
                "VALUE": value,
                "TAG": "Tag",
                "TYPE": "Samples",
                "attributes": {"timestamp": "2025-01-01T00:00:00.000Z"},
            }
        else:
            rec = {
                "id": item_id,
                "value": value,
                "tag": "Tag",
                "type": "Samples",
                "attributes": {"timestamp": "2025-01-01T00:00:00.000Z"},
            }
        data = msgspec.json.encode(rec)
        ack = await self.js.publish(
            stream_subject(asset_uuid, item_id),
            data,
            headers={H_MSG_ID: f"asset_stream_t:0:{next(_counter)}"},
        )
        kv = await self.js.key_value("asset_state")
        await kv.put(state_key(asset_uuid, item_id), data)
        return int(ack.seq)

    async def close(self) -> None:
        await self.nc.close()
