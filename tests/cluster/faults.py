"""The faults of the cluster fault test, who they hit, and how to tell the cluster is whole
again: each fault finds its victim (the controller, a partition leader, the stream leader) at
the moment it strikes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from compose.local_cluster import Cluster
from compose.local_infra import describe_cluster, pid_alive, stop_pid
from ofa_contract.layout import Layout
from tests.cluster.netns import NetLab
from tests.cluster.support import stream_replicas_current
from tests.e2e.followers import Follower


def js_streams(layout: Layout) -> tuple[str, ...]:
    """Replicated JetStream assets of a stack (its stream and its KV buckets' streams). The
    stack's names are namespaced: the default layout's names are not the stack's."""
    return (
        layout.stream,
        f"KV_{layout.state_bucket}",
        f"KV_{layout.bridges_bucket}",
        f"KV_{layout.edges_bucket}",  # the edges' registry
    )


#: How long a partition or a pause lasts (the pause outlasts Kafka's 9 s broker session and
#: NATS's raft heartbeats, so the node is declared dead and comes back).
PARTITION_S = 30.0
PAUSE_S = 15.0


@dataclass
class TimedFollower(Follower):
    """A follower that also notes when each event arrived (monotonic seconds)."""

    times: list[float] = field(default_factory=list)

    def _event(self, kind: str, data: str, sse_id: str | None) -> None:
        before = len(self.seqs)
        super()._event(kind, data, sse_id)
        if len(self.seqs) > before:
            self.times.append(time.monotonic())


@dataclass
class FaultResult:
    """What one fault did and what the clients saw meanwhile."""

    name: str
    victim: str
    started: float
    #: Seconds from the strike until the cluster was whole and every client past it.
    recovered_s: float = 0.0
    #: Longest time any client went without an event, from the strike to recovery.
    stall_s: float = 0.0
    resumes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: Components that exited on their own meanwhile (and were started again), with counts.
    exits: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.name:<22} victim {self.victim:<9} longest stall {self.stall_s:5.1f}s  "
            f"recovered in {self.recovered_s:5.1f}s  client resumes {self.resumes}  "
            f"client errors {self.errors or '-'}  exits {self.exits or '-'}"
        )


def longest_stall(followers: list[TimedFollower], t0: float, t1: float) -> float:
    """The longest gap between events (or from ``t0`` to the first) any client saw in [t0, t1]."""
    worst = 0.0
    for f in followers:
        prev = t0
        for t in f.times:
            if t <= t0:
                continue
            if t > t1:
                break
            worst = max(worst, t - prev)
            prev = t
        worst = max(worst, t1 - prev)
    return worst


async def topic_replicas(bootstrap: str, prefixes: tuple[str, ...]) -> dict[str, list[Any]]:
    """Partitions (replicas, isr, leader) of every topic whose name starts with a prefix."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        described = await admin.describe_topics(names)
        return {t["topic"]: t["partitions"] for t in described}
    finally:
        await admin.close()


class Faults:
    """Strikes against a cluster whose nodes live in a :class:`NetLab`."""

    def __init__(
        self, cluster: Cluster, lab: NetLab, topic_prefixes: tuple[str, ...], layout: Layout
    ) -> None:
        self.cluster = cluster
        self.lab = lab
        self.prefixes = topic_prefixes
        self.layout = layout

    def _index(self, node_name: str) -> int:
        return [n.name for n in self.cluster.nodes].index(node_name)

    async def controller(self) -> int:
        meta = await describe_cluster(self.cluster.kafka_bootstrap)
        return int(meta["controller_id"]) - 1

    async def busiest_leader(self) -> int:
        """The broker leading the most partitions of the stack's topics."""
        count = [0] * len(self.cluster.nodes)
        for parts in (await topic_replicas(self.cluster.kafka_bootstrap, self.prefixes)).values():
            for p in parts:
                if p["leader"] >= 1:
                    count[p["leader"] - 1] += 1
        return max(range(len(count)), key=count.__getitem__)

    async def stream_leader(self) -> int:
        nc_js = await self._js()
        try:
            leader, _ = await stream_replicas_current(nc_js[1], self.layout.stream)
        finally:
            await nc_js[0].close()
        assert leader, "the stream has no leader"
        return self._index(leader.removeprefix("ofa-"))

    async def _js(self) -> tuple[Any, Any]:
        import nats

        nc = await nats.connect(self.cluster.nats_urls, connect_timeout=3)
        return nc, nc.jetstream()

    async def kill_kafka(self, i: int, down_s: float = 3.0) -> None:
        """kill -9 broker ``i``, leave it down ``down_s``, start it again."""
        k = self.cluster.kafka[i]
        await asyncio.to_thread(stop_pid, k.pid, 5.0, signal.SIGKILL)
        await asyncio.sleep(down_s)  # a fault's planned length, not a sync point
        await asyncio.to_thread(k.start)

    async def kill_nats(self, i: int, down_s: float = 3.0) -> None:
        n = self.cluster.nats[i]
        await asyncio.to_thread(n.kill)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(n.start)

    async def partition(self, i: int, ports: tuple[int, ...], hold_s: float) -> None:
        await self.lab.isolate(i, ports)
        try:
            await asyncio.sleep(hold_s)
        finally:
            await self.lab.heal(i)

    async def pause(self, pid: int | None, hold_s: float) -> None:
        """SIGSTOP a process for ``hold_s`` seconds, then SIGCONT."""
        assert pid and pid_alive(pid)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(hold_s)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def whole(self) -> str | None:
        """None when every broker is up with every partition fully in sync and every stream has
        a leader and two current followers; otherwise what is still missing."""
        try:
            meta = await describe_cluster(self.cluster.kafka_bootstrap)
            if len(meta["brokers"]) < len(self.cluster.nodes):
                return f"brokers {[b['node_id'] for b in meta['brokers']]}"
            topics = await topic_replicas(
                self.cluster.kafka_bootstrap, (*self.prefixes, "__consumer_offsets")
            )
            short = [t for t, parts in topics.items() for p in parts if len(p["isr"]) < 3]
            if short:
                return f"under-replicated: {sorted(set(short))[:3]}"
            nc, js = await self._js()
            try:
                for s in js_streams(self.layout):
                    leader, current = await stream_replicas_current(js, s)
                    if not leader or current < 2:
                        return f"stream {s}: leader {leader}, {current} current"
            finally:
                await nc.close()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None
