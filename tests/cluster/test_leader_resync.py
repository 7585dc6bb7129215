"""The edge re-syncs its live feeds from the stream when the stream elects a leader, with a
real election on a 3-node JetStream cluster (no Kafka).

RePublish is at most once: around a leader change a single live message can be lost. The
per-subject sequence headers reveal it only with the next message of the same data item, after
later messages of the asset's other items went out, so the fill delivered it out of order (the
inversions of the fault runs 9 and 10, docs/decisions.md). The stream's leader-election advisory
now makes the edge read the asset from the stream before it delivers anything newer.
"""

from __future__ import annotations

import msgspec

from compose import local_cluster
from tests.cluster.support import wait_stream_whole
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.edge.test_resync import (
    advisory_subject,
    check_order_after_election,
    open_with_a_lost_message,
)


async def test_a_message_lost_before_a_leader_change_reaches_clients_in_stream_order(
    nats_cluster: local_cluster.Cluster,
) -> None:
    urls = nats_cluster.nats_urls
    pub = await Publisher.connect(urls[0], num_replicas=3)
    leader, followers = await wait_stream_whole(pub.js, pub.stream, 2, timeout=60)
    assert leader and followers == 2, (leader, followers)
    # The edge on another node than the publisher: live messages cross the cluster's routes.
    async with running_edge(urls[1]) as edge:
        c, sent, seen = await open_with_a_lost_message(edge, pub, "L1")
        # A real election: the leader steps down; once the advisory is out (seen here), the
        # messages that follow are stored by the new leader.
        advisories = await pub.nc.subscribe(advisory_subject(pub.stream))
        await pub.nc.flush()
        stepdown = f"$JS.API.STREAM.LEADER.STEPDOWN.{pub.stream}"
        answer = await pub.nc.request(stepdown, b"", timeout=15)
        assert msgspec.json.decode(answer.data).get("success") is True, answer.data
        elected = msgspec.json.decode((await advisories.next_msg(timeout=30)).data)
        assert elected["stream"] == pub.stream, elected
        await check_order_after_election(edge, pub, c, sent, seen, "L1")
        await advisories.unsubscribe()
        await c.close()
    await pub.close()
