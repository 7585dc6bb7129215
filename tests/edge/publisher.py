"""Test-side publisher: creates the stream and publishes records the way the bridge does
(stream ``ofa.asset.>`` with RePublish to ``asset.>``, a duplicate window, ``Nats-Msg-Id``)."""

from __future__ import annotations

import itertools

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, RePublish, StreamConfig

from ofa_contract.layout import Layout, NatsHeaders

_counter = itertools.count()


class Publisher:
    """Publishes asset records to a JetStream stream laid out as ``layout`` says."""

    def __init__(self, nc: NatsClient, layout: Layout | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.layout = layout or Layout()
        self.stream = self.layout.stream

    @classmethod
    async def connect(cls, url: str, layout: Layout | None = None, **limits: int) -> Publisher:
        nc = await nats.connect(url)
        pub = cls(nc, layout)
        await pub.create_stream(**limits)
        return pub

    async def create_stream(self, **limits: int) -> None:
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[self.layout.stream_subjects()],
                republish=RePublish(
                    src=self.layout.stream_subjects(), dest=self.layout.live_republish()
                ),
                duplicate_window=120.0,
                **limits,
            )
        )
        await self.js.create_key_value(KeyValueConfig(bucket=self.layout.state_bucket, history=1))

    async def publish(
        self, asset_uuid: str, item_id: str, value: object, upper: bool = True
    ) -> int:
        """Publish one record (OpenFactory upper-case keys or MTConnect lower-case); its seq."""
        keys = ("ID", "VALUE", "TAG", "TYPE") if upper else ("id", "value", "tag", "type")
        rec = dict(zip(keys, (item_id, value, "Tag", "Samples"), strict=True))
        rec["attributes"] = {"timestamp": "2025-01-01T00:00:00.000Z"}
        data = msgspec.json.encode(rec)
        ack = await self.js.publish(
            self.layout.stream_subject(asset_uuid, item_id),
            data,
            headers={NatsHeaders.MSG_ID: Layout.msg_id("asset_stream_t", 0, next(_counter))},
        )
        kv = await self.js.key_value(self.layout.state_bucket)
        await kv.put(self.layout.state_key(asset_uuid, item_id), data)
        return int(ack.seq)

    async def close(self) -> None:
        await self.nc.close()
