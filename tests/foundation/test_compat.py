"""Every private-API reach-in of ofa_contract.compat still finds its attribute, and works."""

from __future__ import annotations

import asyncio
import inspect

import nats
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.producer import sender
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from compose import local_infra
from ofa_contract import compat
from tests.helpers import Endpoints
from tests.support.kafka import create_topics


def test_nats_private_attributes_exist() -> None:
    assert callable(getattr(Client, "_send_command", None))
    assert callable(getattr(Client, "_flush_pending", None))
    assert hasattr(Client(), "_flush_queue")
    assert "self._id" in inspect.getsource(Subscription.__init__)


async def test_aiokafka_private_attributes_exist() -> None:
    assert isinstance(sender.BACKOFF_OVERRIDE, float)
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    try:
        assert callable(getattr(consumer._client, "fetch_all_metadata", None))
    finally:
        await consumer.stop()


def test_lower_txn_retry_backoff_only_lowers() -> None:
    before = sender.BACKOFF_OVERRIDE
    try:
        assert compat.lower_txn_retry_backoff(before + 1) == before
        assert compat.lower_txn_retry_backoff(0.001) == 0.001
        assert sender.BACKOFF_OVERRIDE == 0.001
    finally:
        sender.BACKOFF_OVERRIDE = before


async def test_raw_hpub_and_subscription_sid_against_a_real_server(
    nats_private: local_infra.NatsProcess,
) -> None:
    nc = await nats.connect(nats_private.url)
    try:
        got: asyncio.Queue[tuple[str, bytes, str | None]] = asyncio.Queue()

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            await got.put((msg.subject, msg.data, (msg.headers or {}).get("K")))

        sub = await nc.subscribe("raw.test", cb=on_msg)
        assert isinstance(compat.subscription_sid(sub), int)
        hdr = b"NATS/1.0\r\nK: v\r\n\r\n"
        payload = b"hello"
        cmd = (
            f"HPUB raw.test _INBOX.x {len(hdr)} {len(hdr) + len(payload)}\r\n".encode()
            + hdr
            + payload
            + b"\r\n"
        )
        await compat.nats_send_raw(nc, cmd)
        assert await asyncio.wait_for(got.get(), 10) == ("raw.test", b"hello", "v")
        compat.nats_set_reconnect(
            nc, allow_reconnect=False, max_reconnect_attempts=7, reconnect_time_wait=0.25
        )
        assert nc.options["allow_reconnect"] is False
        assert nc.options["max_reconnect_attempts"] == 7
        assert nc.options["reconnect_time_wait"] == 0.25
    finally:
        await nc.close()


async def test_committed_metadata_round_trip_against_a_real_broker(
    infra: Endpoints, unique: str
) -> None:
    """What a commit stores as ``(offset, metadata)`` is what kafka_committed_metadata reads
    back (a partition without a commit is absent)."""
    topic = f"t_compat_{unique}"
    await create_topics(infra.kafka, [topic], partitions=2)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka, group_id=f"g_compat_{unique}", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        assert await compat.kafka_committed_metadata(consumer, tps) == {}
        assert await compat.kafka_committed_metadata(consumer, []) == {}
        await consumer.commit({tps[0]: (0, "ofa-src1;in=0:41")})
        got = await compat.kafka_committed_metadata(consumer, tps)
        assert got == {tps[0]: "ofa-src1;in=0:41"}
    finally:
        await consumer.stop()
