"""Fixtures of the cluster tests: a whole cluster (3 brokers, 3 nats-servers) on loopback or
with each node in a network namespace of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from compose import local_cluster, local_infra
from tests.cluster import netns


@pytest.fixture(scope="module")
def lab() -> Iterator[netns.NetLab]:
    """Three network namespaces on a private bridge, removed at the end even on failure."""
    why = netns.available()
    if why:
        pytest.fail(why)  # a fault test that cannot cut a node off must not pass quietly
    with netns.netlab(3) as made:
        yield made


@pytest.fixture(scope="module")
def host_cluster(
    lab: netns.NetLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[local_cluster.Cluster]:
    """The cluster with each node (its broker and its nats-server) inside its namespace."""
    cfg = local_infra.private_config(tmp_path_factory.mktemp("hosts"))
    cluster = local_cluster.Cluster(cfg, lab.nodes())
    try:
        cluster.start()
        asyncio.run(cluster.wait_ready())
        yield cluster
    finally:
        cluster.stop()


def node_logs(cluster: local_cluster.Cluster, lines: int = 15) -> str:
    """The log tails of every node, for failure messages."""
    out = []
    for k, n in zip(cluster.kafka, cluster.nats, strict=True):
        out.append(f"--- kafka {k.node.name}\n{k.log_tail(lines)}")
        out.append(f"--- nats {n.node.name}\n{n.log_tail(lines)}")
    return "\n".join(out)


@pytest.fixture
async def nats_cluster(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[local_cluster.Cluster]:
    """A 3-node NATS cluster on loopback (no Kafka) with the sync_interval the test asks for
    (indirect parametrization; the local cluster's default otherwise)."""
    cfg = local_infra.private_config(tmp_path)
    sync_interval = getattr(request, "param", None)
    if sync_interval is not None:
        cfg = msgspec.structs.replace(cfg, nats_sync_interval=sync_interval)
    cluster = local_cluster.Cluster(cfg, local_cluster.private_nodes())
    for n in cluster.nats:
        n.start()
    try:
        await asyncio.gather(*(n.wait_ready(60) for n in cluster.nats))
        yield cluster
    finally:
        for n in cluster.nats:
            n.stop()
