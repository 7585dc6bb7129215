"""TopicAdmin on a multi-broker cluster: every metadata request goes to a random broker, and a
topic just created reaches the brokers one by one. A cluster whose brokers lag is scripted here
(pure logic: the answers a real cluster gave, see issue 13's "changelog has 0 partitions"); the
real cluster is exercised by tests/cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from splitter.topic_admin import TopicAdmin, TopicError

TOPIC = "t_changelog"


def _unknown() -> list[dict[str, Any]]:
    return [{"topic": TOPIC, "error_code": 3, "partitions": []}]


def _known(n: int, leader: int = 1) -> list[dict[str, Any]]:
    parts = [{"partition": p, "leader": leader, "error_code": 0} for p in range(n)]
    return [{"topic": TOPIC, "error_code": 0, "partitions": parts}]


class _Created:
    topic_errors = [(TOPIC, 0, None)]


class LaggingCluster:
    """Answers describe_topics from a script (one answer per request, the last one repeated):
    the brokers asked in turn, some of which have not heard of the topic yet."""

    def __init__(self, answers: list[list[dict[str, Any]]]) -> None:
        self._answers: Iterator[list[dict[str, Any]]] = iter(answers)
        self._last = answers[-1]
        self.requests = 0

    async def create_topics(self, _: object) -> _Created:
        return _Created()

    async def describe_topics(self, _: list[str]) -> list[dict[str, Any]]:
        self.requests += 1
        self._last = next(self._answers, self._last)
        return self._last


def admin_on(cluster: LaggingCluster, timeout: float = 5.0) -> TopicAdmin:
    admin = TopicAdmin("127.0.0.1:1", propagation_timeout_s=timeout)
    admin._admin = cluster  # type: ignore[assignment]
    return admin


async def test_partitions_after_ensure_waits_for_a_broker_that_knows_the_topic() -> None:
    # ensure() sees the topic whole on one broker; the next request lands on a broker that
    # has not heard of it yet, then on one that has.
    cluster = LaggingCluster([_known(6), _unknown(), _unknown(), _known(6)])
    admin = admin_on(cluster)
    assert await admin.ensure(TOPIC, 6, 3, {}) is True
    assert await admin.partitions(TOPIC) == 6
    assert cluster.requests == 4


async def test_ensure_waits_for_every_partition_of_a_created_topic() -> None:
    # A broker that knows the topic but not all its partitions' leaders yet.
    cluster = LaggingCluster([_unknown(), _known(6, leader=-1), _known(6)])
    admin = admin_on(cluster)
    await admin.ensure(TOPIC, 6, 3, {})
    assert cluster.requests == 3
    assert await admin.partitions(TOPIC) == 6


async def test_a_topic_never_seen_again_is_an_error_not_zero_partitions() -> None:
    cluster = LaggingCluster([_known(6), _unknown()])
    admin = admin_on(cluster, timeout=0.3)
    await admin.ensure(TOPIC, 6, 3, {})
    with pytest.raises(TopicError, match="had 6 partitions but the cluster answers 0"):
        await admin.partitions(TOPIC)


async def test_an_unknown_topic_not_ensured_has_zero_partitions() -> None:
    cluster = LaggingCluster([_unknown()])
    assert await admin_on(cluster).partitions(TOPIC) == 0
    assert cluster.requests == 1
