"""Three Kafka brokers (KRaft, each broker and controller in one process) and a three-node NATS
JetStream cluster (routes), each node its own process, as ``ofa-serving infra up --cluster``.

Replication as in production: topics RF 3 with ``min.insync.replicas=2``, the transaction and
offsets logs RF 3 / min ISR 2, so one node may be lost without losing a write or availability.
Nodes listen on 127.0.0.1 with a port block each; the fault tests put each node on an address
of its own inside a network namespace (``NodeAddr.netns``) so that it can be cut off from the
others without being stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from compose.local_infra import (
    InfraConfig,
    InfraError,
    KafkaProcess,
    NatsProcess,
    describe_cluster,
    free_port,
    pid_alive,
    port_open,
    read_struct,
    stop_pid,
    write_struct,
)

#: Broker settings that make a lost node cost seconds rather than tens of seconds; the rest
#: are Kafka's defaults. 10 s before a silent follower leaves the ISR (default 30 s: an
#: ``acks=all`` write to a partition whose follower was cut off waits that long).
FAILOVER_PROPS = {
    "replica.lag.time.max.ms": "10000",
    "broker.session.timeout.ms": "9000",
    "broker.heartbeat.interval.ms": "2000",
}


class NodeAddr(msgspec.Struct, kw_only=True):
    """Where one cluster node (a broker and a nats-server) listens."""

    name: str
    host: str = "127.0.0.1"
    kafka_port: int
    controller_port: int
    nats_port: int
    route_port: int
    monitor_port: int
    #: Network namespace the node's processes run in (None = this host's).
    netns: str | None = None


class ClusterState(msgspec.Struct, kw_only=True):
    """What ``up --cluster`` started, persisted in ``<work_dir>/cluster/cluster.json``."""

    nodes: list[NodeAddr] = msgspec.field(default_factory=list)
    kafka_pids: list[int | None] = msgspec.field(default_factory=list)
    nats_pids: list[int | None] = msgspec.field(default_factory=list)
    kafka_bootstrap: str = ""
    nats_url: str = ""


def loopback_nodes(cfg: InfraConfig, count: int = 3) -> list[NodeAddr]:
    """``count`` nodes on 127.0.0.1, node i on ports ``cluster_base_port + 10*i + 0..4``."""
    b = cfg.cluster_base_port
    return [
        NodeAddr(
            name=f"n{i + 1}",
            kafka_port=b + 10 * i,
            controller_port=b + 10 * i + 1,
            nats_port=b + 10 * i + 2,
            route_port=b + 10 * i + 3,
            monitor_port=b + 10 * i + 4,
        )
        for i in range(count)
    ]


def private_nodes(count: int = 3) -> list[NodeAddr]:
    """``count`` nodes on 127.0.0.1 on free ports, for tests beside any other servers."""
    return [
        NodeAddr(
            name=f"n{i + 1}",
            kafka_port=free_port(),
            controller_port=free_port(),
            nats_port=free_port(),
            route_port=free_port(),
            monitor_port=free_port(),
        )
        for i in range(count)
    ]


def _prefix(node: NodeAddr) -> list[str]:
    return ["ip", "netns", "exec", node.netns] if node.netns else []


class ClusterKafka(KafkaProcess):
    """One broker+controller of a KRaft quorum of every node."""

    heap_min = "128m"

    def __init__(
        self, cfg: InfraConfig, node: NodeAddr, peers: list[NodeAddr], cluster_id: str
    ) -> None:
        super().__init__(msgspec.structs.replace(cfg, kafka_heap=cfg.cluster_kafka_heap))
        self.node = node
        self.peers = peers
        self.index = peers.index(node) + 1
        self.dir = Path(cfg.work_dir) / f"kafka-{node.name}"
        self.host = node.host
        self.port = node.kafka_port
        self.prefix = _prefix(node)
        self.cluster_id = cluster_id

    def properties(self) -> dict[str, str]:
        """Single-node properties, with the quorum of all nodes and replication 3 / min ISR 2."""
        props = super().properties()
        n = self.node
        voters = ",".join(f"{i}@{p.host}:{p.controller_port}" for i, p in enumerate(self.peers, 1))
        rf = str(min(3, len(self.peers)))
        isr = str(min(2, len(self.peers)))
        props.update(
            {
                "node.id": str(self.index),
                "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://{n.host}:{n.kafka_port},"
                f"CONTROLLER://{n.host}:{n.controller_port}",
                "advertised.listeners": f"PLAINTEXT://{n.host}:{n.kafka_port}",
                "offsets.topic.replication.factor": rf,
                "transaction.state.log.replication.factor": rf,
                "transaction.state.log.min.isr": isr,
                "min.insync.replicas": isr,
                "default.replication.factor": rf,
                # The default 128 MiB cleaner buffer is a third of this small heap.
                "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
                "num.network.threads": "2",
                "num.io.threads": "4",
                **FAILOVER_PROPS,
            }
        )
        return props


class ClusterNats(NatsProcess):
    """One nats-server of a JetStream cluster whose routes lead to every other node."""

    def __init__(self, cfg: InfraConfig, node: NodeAddr, peers: list[NodeAddr]) -> None:
        super().__init__(cfg)
        self.node = node
        self.peers = peers
        self.dir = Path(cfg.work_dir) / f"nats-{node.name}"
        self.host = node.host
        self.port = node.nats_port
        self.monitor_port = node.monitor_port
        self.prefix = _prefix(node)

    def config_text(self) -> str:
        """Client, route and monitor listeners; JetStream with the configured sync_interval."""
        n = self.node
        routes = ", ".join(
            f'"nats-route://{p.host}:{p.route_port}"' for p in self.peers if p.name != n.name
        )
        return (
            f'server_name: "ofa-{n.name}"\nhost: "{n.host}"\nport: {n.nats_port}\n'
            f'http: "{n.host}:{n.monitor_port}"\n'
            "max_payload: 2MB\n"
            f'cluster {{\n  name: "ofa-local"\n  listen: "{n.host}:{n.route_port}"\n'
            f"  routes: [{routes}]\n}}\n"
            f'jetstream {{\n  store_dir: "{self.dir / "store"}"\n'
            f"  sync_interval: {self.cfg.nats_sync_interval}\n}}\n"
        )


def _cluster_dir(cfg: InfraConfig) -> Path:
    return Path(cfg.work_dir) / "cluster"


def _existing_cluster_id(cfg: InfraConfig) -> str | None:
    """The cluster id the brokers were formatted with (they must all share one)."""
    for meta in _cluster_dir(cfg).glob("kafka-*/data/meta.properties"):
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
    return None


class Cluster:
    """Every node's broker and nats-server, started, checked, stopped and faulted together."""

    def __init__(self, cfg: InfraConfig, nodes: list[NodeAddr]) -> None:
        self.cfg = msgspec.structs.replace(cfg, work_dir=str(_cluster_dir(cfg)))
        self.nodes = nodes
        cid = _existing_cluster_id(cfg) or KafkaProcess(cfg).cluster_id
        self.kafka = [ClusterKafka(self.cfg, n, nodes, cid) for n in nodes]
        self.nats = [ClusterNats(self.cfg, n, nodes) for n in nodes]

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(k.bootstrap for k in self.kafka)

    @property
    def nats_url(self) -> str:
        """The first node's URL: clients learn the others from its INFO (cluster gossip)."""
        return self.nats[0].url

    @property
    def nats_urls(self) -> list[str]:
        return [n.url for n in self.nats]

    def state(self) -> ClusterState:
        return ClusterState(
            nodes=self.nodes,
            kafka_pids=[k.pid for k in self.kafka],
            nats_pids=[n.pid for n in self.nats],
            kafka_bootstrap=self.kafka_bootstrap,
            nats_url=self.nats_url,
        )

    def start(self) -> None:
        """Start every node that is not running (formatting brokers on first start)."""
        for k in self.kafka:
            if not pid_alive(k.pid):
                k.start()
        for n in self.nats:
            if not pid_alive(n.pid):
                n.start()

    async def wait_ready(self, timeout: float = 180.0) -> None:
        """Until each broker answers metadata with every broker in it and each nats-server
        answers JetStream requests (which needs an elected meta leader)."""
        await asyncio.gather(
            *(k.wait_ready(timeout) for k in self.kafka),
            *(n.wait_ready(timeout) for n in self.nats),
        )
        await wait_brokers(self.kafka_bootstrap, len(self.kafka), timeout)

    def stop(self) -> None:
        """SIGTERM every process, NATS first, then SIGKILL after a grace period."""
        for n in self.nats:
            stop_pid(n.pid, 15)
            n.pid = None
        for k in self.kafka:
            stop_pid(k.pid, 60)
            k.pid = None


async def wait_brokers(bootstrap: str, count: int, timeout: float) -> None:
    """Wait until the cluster's metadata lists ``count`` brokers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: object = None
    while loop.time() < deadline:
        try:
            meta = await describe_cluster(bootstrap)
            seen = [b["node_id"] for b in meta["brokers"]]
            if len(meta["brokers"]) >= count:
                return
        except Exception as exc:
            seen = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.5)
    raise InfraError(f"Kafka cluster did not list {count} brokers within {timeout}s: {seen}")


def _state_path(cfg: InfraConfig) -> Path:
    return _cluster_dir(cfg) / "cluster.json"


def read_state(cfg: InfraConfig) -> ClusterState:
    """The state written by the last ``up --cluster`` (empty when none)."""
    return read_struct(_state_path(cfg), ClusterState)


def _write_state(cfg: InfraConfig, state: ClusterState) -> None:
    write_struct(_state_path(cfg), state)


def _adopt(cluster: Cluster, state: ClusterState) -> None:
    """Take over the processes a previous ``up --cluster`` started (those still alive)."""
    for proc, pid in zip(cluster.kafka, state.kafka_pids, strict=False):
        proc.pid = pid if pid_alive(pid) else None
    for nproc, pid in zip(cluster.nats, state.nats_pids, strict=False):
        nproc.pid = pid if pid_alive(pid) else None


async def up(cfg: InfraConfig) -> ClusterState:
    """Start the loopback cluster (reusing running nodes) and wait until it is whole."""
    cluster = Cluster(cfg, loopback_nodes(cfg))
    _adopt(cluster, read_state(cfg))
    taken = [
        f"port {port} is taken by another process; set OFA_CLUSTER_BASE_PORT to a free block"
        for procs, attr in ((cluster.kafka, "kafka"), (cluster.nats, "nats"))
        for p in procs
        if not pid_alive(p.pid)
        for port in _ports(p.node, attr)
        if port_open(port, p.node.host)
    ]
    if taken:
        raise InfraError("; ".join(taken))
    await asyncio.to_thread(cluster.start)
    _write_state(cfg, cluster.state())
    await cluster.wait_ready()
    return cluster.state()


def _ports(node: NodeAddr, kind: str) -> list[int]:
    if kind == "kafka":
        return [node.kafka_port, node.controller_port]
    return [node.nats_port, node.route_port, node.monitor_port]


def down(cfg: InfraConfig) -> ClusterState:
    """Stop what ``up --cluster`` started."""
    state = read_state(cfg)
    for pid in state.nats_pids:
        stop_pid(pid, 15)
    for pid in state.kafka_pids:
        stop_pid(pid, 60)
    if state.nodes:
        _write_state(cfg, ClusterState())
    return state


def status(cfg: InfraConfig) -> dict[str, object]:
    """Each node's broker and nats-server: running or not, pid, address."""
    state = read_state(cfg)
    nodes = state.nodes or loopback_nodes(cfg)
    kpids = state.kafka_pids or [None] * len(nodes)
    npids = state.nats_pids or [None] * len(nodes)
    return {
        "cluster": [
            {
                "node": n.name,
                "kafka": {
                    "running": pid_alive(kp) and port_open(n.kafka_port, n.host),
                    "pid": kp,
                    "bootstrap": f"{n.host}:{n.kafka_port}",
                },
                "nats": {
                    "running": pid_alive(np) and port_open(n.nats_port, n.host),
                    "pid": np,
                    "url": f"nats://{n.host}:{n.nats_port}",
                    "monitor": f"http://{n.host}:{n.monitor_port}",
                },
            }
            for n, kp, np in zip(nodes, kpids, npids, strict=True)
        ],
        "kafka_bootstrap": state.kafka_bootstrap,
        "nats_url": state.nats_url,
        "work_dir": str(_cluster_dir(cfg)),
    }
