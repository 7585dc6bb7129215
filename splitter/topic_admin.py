"""Topic administration for the splitter: internal topics at start-up, derived topics on first
use. Kafka's admin API answers per-topic error codes instead of raising, so they are checked
here and an existing topic counts as success (several instances race to create the same one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.structs import TopicPartition

from ofa_contract.runtime import get_logger

log = get_logger("splitter", __name__)

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3


#: Create-topic answers that mean the settings do not fit the cluster: InvalidTopic (17),
#: TopicAuthorizationFailed (29), ClusterAuthorizationFailed (31), InvalidPartitions (37),
#: InvalidConfig (40), PolicyViolation (44). Others heal, e.g. InvalidReplicationFactor (38)
#: while a broker of a 3-broker cluster is down and RF 3 is asked for.
_PERMANENT_CODES = frozenset({17, 29, 31, 37, 40, 44})


class TopicError(RuntimeError):
    """A topic could not be created or described; the message says which and why.
    ``permanent`` when retrying cannot help (the settings must change)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class TopicAdmin:
    """A thin wrapper around :class:`AIOKafkaAdminClient` for the topics the splitter owns."""

    def __init__(self, bootstrap: str, *, propagation_timeout_s: float = 15.0) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
        #: Partition counts of the topics :meth:`ensure` saw whole. Each metadata request goes
        #: to a random broker, and a topic just created reaches the brokers one by one: another
        #: broker may still answer "unknown topic" (the splitter once read "changelog has 0
        #: partitions" right after creating it). A topic known here is asked again until a
        #: broker knows it, within ``propagation_timeout_s``.
        self._known: dict[str, int] = {}
        self._propagation_timeout_s = propagation_timeout_s

    async def start(self) -> None:
        """Connect to the cluster."""
        await self._admin.start()

    async def close(self) -> None:
        """Close the connections."""
        await self._admin.close()

    async def ping(self, topic: str) -> None:
        """Raise if the cluster does not answer a metadata request (for ``topic`` only: the
        metadata of every topic of a large cluster takes the event loop tens of ms to decode,
        and /ready is polled while records flow)."""
        await self._admin.describe_topics([topic])

    async def _whole(self, topic: str) -> int:
        """The partition count of ``topic`` when the broker asked names a leader for every
        partition of it, else 0."""
        described: list[dict[str, Any]] = await self._admin.describe_topics([topic])
        for t in described:
            if t["topic"] == topic and t["error_code"] == 0 and t["partitions"]:
                parts = t["partitions"]
                if all(p["leader"] >= 0 and p["error_code"] == 0 for p in parts):
                    return len(parts)
        return 0

    async def _count(self, topic: str) -> int:
        described: list[dict[str, Any]] = await self._admin.describe_topics([topic])
        for t in described:
            if t["topic"] != topic:
                continue
            if t["error_code"] == _UNKNOWN_TOPIC:
                return 0
            if t["error_code"] != 0:
                raise TopicError(f"cannot describe topic {topic!r}: {for_code(t['error_code'])}")
            return len(t["partitions"])
        return 0

    async def partitions(self, topic: str) -> int:
        """The partition count of ``topic``, or 0 when it does not exist. For a topic
        :meth:`ensure` saw, never less than it saw: a broker that has not heard of it yet is
        asked again (bounded, then :class:`TopicError`)."""
        known = self._known.get(topic, 0)
        deadline = time.monotonic() + self._propagation_timeout_s
        while True:
            n = await self._count(topic)
            if n >= known:
                return n
            if time.monotonic() > deadline:
                raise TopicError(
                    f"topic {topic!r} had {known} partitions but the cluster answers {n} "
                    f"after {self._propagation_timeout_s:.0f}s"
                )
            await asyncio.sleep(0.1)

    async def ensure(
        self, topic: str, partitions: int, replication: int, config: dict[str, str]
    ) -> bool:
        """Create ``topic`` unless it exists; return True when this call created it.

        Waits until the topic's metadata names a leader for every partition, so that a producer
        can send to it at once.
        """
        resp = await self._admin.create_topics(
            [NewTopic(topic, partitions, replication, topic_configs=config)]
        )
        created = False
        for entry in resp.topic_errors:
            name, code = entry[0], entry[1]
            if name != topic:
                continue
            if code == 0:
                created = True
            elif code != _TOPIC_ALREADY_EXISTS:
                detail = entry[2] if len(entry) > 2 and entry[2] else for_code(code).__name__
                raise TopicError(
                    f"cannot create topic {topic!r}: {detail}", permanent=code in _PERMANENT_CODES
                )
        # A topic we created must be seen with all its partitions (a broker may know of the
        # topic before it knows every partition).
        want = partitions if created else 1
        deadline = time.monotonic() + self._propagation_timeout_s
        while (seen := await self._whole(topic)) < want:
            if time.monotonic() > deadline:
                raise TopicError(
                    f"topic {topic!r} was created but has no leader for some partition "
                    f"after {self._propagation_timeout_s:.0f}s"
                )
            await asyncio.sleep(0.05)
        self._known[topic] = seen
        if created:
            log.info("created topic", extra={"topic": topic, "partitions": partitions})
        return created


async def wait_for_leaders(client: AIOKafkaClient, topic: str, timeout: float) -> None:
    """Refresh ``client``'s metadata until it names a leader for every partition of ``topic``
    (which it must track, see ``AIOKafkaClient.add_topic``); log once when this takes long and
    raise :class:`TopicError` after ``timeout`` seconds."""
    started = time.monotonic()
    logged = False
    while True:
        parts = client.cluster.partitions_for_topic(topic)
        if parts and all(
            client.cluster.leader_for_partition(TopicPartition(topic, p)) not in (None, -1)
            for p in parts
        ):
            return
        waited = time.monotonic() - started
        if waited > timeout:
            raise TopicError(f"no leader for every partition of {topic!r} after {waited:.1f}s")
        if not logged and waited > 1:
            log.warning("waiting for the leaders of a topic", extra={"topic": topic})
            logged = True
        await client.force_metadata_update()
        # A metadata round trip that still shows no leader returns at once: back off briefly.
        await asyncio.sleep(0.02)


async def probe_kafka(bootstrap: str, topic: str) -> None:
    """Raise unless the cluster at ``bootstrap`` answers a metadata request; leaves nothing open
    (start-up waits for Kafka with it)."""
    admin = TopicAdmin(bootstrap)
    try:
        await admin.start()
        await admin.ping(topic)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
