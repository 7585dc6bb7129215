"""Every justified reach-in to a library's private API, in one place.

Each one says why the public API does not do, and the library versions it was checked against;
``tests/foundation/test_compat.py`` fails as soon as an attribute disappears, so an upgrade
breaks a test, not production. (nats.py's ``js._jsm`` is *not* needed: ``JetStreamContext``
inherits ``JetStreamManager``, so ``nc.jetstream().stream_info(...)`` is public.)

Checked against: nats-py 2.16.0, aiokafka 0.14.0.
"""

from __future__ import annotations

import threading
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.producer import sender as _aiokafka_sender
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

#: Library versions the reach-ins below were checked against.
CHECKED_VERSIONS = {"nats-py": "2.16.0", "aiokafka": "0.14.0"}


async def nats_send_raw(nc: NatsClient, command: bytes) -> None:
    """Queue a pre-encoded protocol command (e.g. an ``HPUB`` whose header block was built once)
    on the client's command buffer, and flush as ``publish`` does.

    Why: ``publish`` re-validates and re-encodes every header on each call (and each resend);
    that was a quarter of a bridge worker's CPU. Private: ``Client._send_command``,
    ``Client._flush_queue``, ``Client._flush_pending`` (nats-py 2.x).
    """
    await nc._send_command(command)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def nats_set_reconnect(
    nc: NatsClient,
    *,
    allow_reconnect: bool,
    max_reconnect_attempts: int,
    reconnect_time_wait: float,
) -> None:
    """Change a connected client's reconnect policy (``Client.options``, read by nats.py each
    time it reconnects).

    Why: ``nats.connect`` takes one policy for the first connect and the reconnects alike, and
    its first connect never gives up on an unreachable server with ``max_reconnect_attempts``
    -1 or 0; :func:`ofa_contract.runtime.connect.connect_nats` connects with a small budget and
    sets the real one here. Undocumented: the ``options`` dict and these three keys.
    """
    for key in _RECONNECT_KEYS:
        if key not in nc.options:
            raise RuntimeError(f"nats.py client has no option {key!r}; check ofa_contract.compat")
    nc.options["allow_reconnect"] = allow_reconnect
    nc.options["max_reconnect_attempts"] = max_reconnect_attempts
    nc.options["reconnect_time_wait"] = reconnect_time_wait


_RECONNECT_KEYS = ("allow_reconnect", "max_reconnect_attempts", "reconnect_time_wait")


def subscription_sid(sub: Subscription) -> int:
    """The protocol id of a subscription (``Subscription._id``), to match the ``sub`` that
    nats.py attaches to a slow-consumer error with our own records of subscriptions.

    Why: nats.py exposes no public id; comparing objects fails for errors raised on a copy.
    """
    return int(sub._id)


async def kafka_cluster_metadata(consumer: AIOKafkaConsumer) -> ClusterMetadata:
    """A fresh full metadata round trip through the consumer's client (``consumer._client``).

    Why: the consumer's public ``partitions_for_topic`` only knows topics it already follows;
    assigning every partition of a topic it has not seen needs the cluster-wide metadata.
    """
    client: Any = consumer._client
    metadata: ClusterMetadata = await client.fetch_all_metadata()
    return metadata


async def kafka_committed_metadata(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, str]:
    """The metadata committed with the group's offsets of ``partitions`` (one request; a
    partition without a commit is absent).

    Why: ``AIOKafkaConsumer.commit`` takes ``(offset, metadata)`` but ``committed`` returns the
    offset only; the group coordinator's ``fetch_committed_offsets`` (``consumer._coordinator``)
    returns ``OffsetAndMetadata`` per partition.
    """
    if not partitions:
        return {}
    coordinator: Any = consumer._coordinator
    got = await coordinator.fetch_committed_offsets(list(partitions))
    return {tp: str(om.metadata or "") for tp, om in got.items() if om.offset >= 0}


_backoff_lock = threading.Lock()


def lower_txn_retry_backoff(seconds: float) -> float:
    """Lower aiokafka's process-wide retry wait for a transaction start that the broker answers
    with CONCURRENT_TRANSACTIONS (``aiokafka.producer.sender.BACKOFF_OVERRIDE``, 20 ms), never
    raise it; returns the value in force. Call once at process start.

    Why: the broker answers that error until it has written the previous commit's markers
    (about 1 ms); at low load the hard-coded 20 ms wait was most of the splitter's added
    latency. The module global is the only knob aiokafka has.
    """
    with _backoff_lock:
        current = float(_aiokafka_sender.BACKOFF_OVERRIDE)
        if seconds < current:
            _aiokafka_sender.BACKOFF_OVERRIDE = seconds
        return float(_aiokafka_sender.BACKOFF_OVERRIDE)


__all__ = [
    "CHECKED_VERSIONS",
    "kafka_cluster_metadata",
    "kafka_committed_metadata",
    "lower_txn_retry_backoff",
    "nats_send_raw",
    "nats_set_reconnect",
    "subscription_sid",
]
