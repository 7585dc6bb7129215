"""Nodes as hosts: each broker and nats-server runs in its own network namespace; a node can be
cut off from its peers (iptables DROP) and healed without being stopped; the namespaces go
away at the end, also when the body failed."""

from __future__ import annotations

import asyncio
import subprocess

import nats
import pytest
from nats.js.api import StreamConfig

from compose import local_cluster, local_infra
from tests.cluster import netns
from tests.cluster.support import add_stream_when_ready, wait_stream_whole
from tests.support.wait import wait_until


async def _reaches(ns: str, host: str, port: int) -> bool:
    """True when a TCP connection from inside ``ns`` to host:port succeeds within 2 s."""
    code = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout(2)\n"
        f"sys.exit(s.connect_ex(({host!r},{port})))"
    )
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, "python3", "-c", code,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await proc.wait() == 0


async def test_nodes_are_hosts_with_addresses_of_their_own(
    lab: netns.NetLab, host_cluster: local_cluster.Cluster
) -> None:
    hosts: list[str] = []

    async def every_broker_listed() -> bool:
        # The broker that answers may not have seen the last one register yet (CI saw 2 of 3).
        nonlocal hosts
        meta = await local_infra.describe_cluster(host_cluster.kafka_bootstrap)
        hosts = sorted(b["host"] for b in meta["brokers"])
        return len(hosts) == len(lab.ips)

    await wait_until(every_broker_listed, timeout=60, what="every broker in the metadata")
    assert hosts == sorted(lab.ips)
    for k, n in zip(host_cluster.kafka, host_cluster.nats, strict=True):
        assert k.prefix[:3] == ["ip", "netns", "exec"] and k.prefix[3] == k.node.netns
        # The process really lives in the node's namespace, not in this host's.
        for pid in (k.pid, n.pid):
            assert pid is not None
            ns = await netns._arun(["ip", "netns", "identify", str(pid)])
            assert ns.strip() == k.node.netns


async def test_isolate_cuts_peers_not_clients_and_heal_restores(
    lab: netns.NetLab, host_cluster: local_cluster.Cluster
) -> None:
    n1, n2 = host_cluster.nodes[0], host_cluster.nodes[1]
    assert n1.netns and n2.netns
    assert await _reaches(n1.netns, n2.host, n2.kafka_port)
    await lab.isolate(0)
    try:
        assert await lab.drop_rules(0) == 4
        assert not await _reaches(n1.netns, n2.host, n2.kafka_port)
        assert not await _reaches(n2.netns, n1.host, n1.nats_port)
        assert await _reaches(n2.netns, lab.ips[2], host_cluster.nodes[2].nats_port)
        assert local_infra.port_open(n1.nats_port, n1.host)  # clients on this host still reach it
        assert local_infra.pid_alive(host_cluster.kafka[0].pid)
        assert local_infra.pid_alive(host_cluster.nats[0].pid)
    finally:
        await lab.heal(0)
    assert await lab.drop_rules(0) == 0
    assert await _reaches(n1.netns, n2.host, n2.kafka_port)


async def test_replicated_stream_keeps_a_leader_across_an_isolation(
    lab: netns.NetLab, host_cluster: local_cluster.Cluster
) -> None:
    nc = await nats.connect(host_cluster.nats_urls[1])
    try:
        js = nc.jetstream()
        # The previous test's heal may still be electing a meta leader.
        await add_stream_when_ready(
            js, StreamConfig(name="T_LAB", subjects=["lab.>"], num_replicas=3)
        )
        leader, current = await wait_stream_whole(js, "T_LAB", 2, 60)
        assert leader and current == 2
        victim = int(leader.removeprefix("ofa-n")) - 1
        # Ask the majority side: the cut-off node cannot know who leads now.
        peer = await nats.connect(host_cluster.nats_urls[(victim + 1) % 3])
        await lab.isolate(victim)
        try:
            pjs = peer.jetstream()

            async def other_leader() -> str | None:
                with_leader = await wait_stream_whole(pjs, "T_LAB", 1, 1)
                return with_leader[0] if with_leader[0] not in (None, leader) else None

            new = None
            for _ in range(60):
                new = await other_leader()
                if new:
                    break
            assert new, f"no new leader while {leader} was cut off"
            ack = await pjs.publish("lab.x", b"during", timeout=10)
            assert ack.seq >= 1
        finally:
            await lab.heal(victim)
            await peer.close()
        leader2, current2 = await wait_stream_whole(js, "T_LAB", 2, 90)
        assert leader2 and current2 == 2, "the healed node did not catch up"
    finally:
        await nc.close()


def test_lab_is_removed_even_when_the_body_fails() -> None:
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), netns.netlab(2) as made:
        names = [*made.names, made.bridge]
        raise RuntimeError("boom")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert names and not any(n in listed or n in links for n in names)
