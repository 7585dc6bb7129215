"""`ofa-serving infra up --cluster`: three brokers and three nats-servers, each its own process,
with the replication production uses; our own topic and stream setup code gets 3 replicas."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from bridge.settings import BridgeSettings
from bridge.stream_setup import ensure_registry, ensure_streams
from compose import local_cluster, local_infra
from edge.registry import open_bucket
from edge.settings import EdgeSettings
from ofa_contract.layout import Layout
from ofa_contract.settings import from_env
from splitter.settings import SplitterSettings
from splitter.topic_admin import TopicAdmin
from tests.cluster.support import (
    describe_topic,
    free_port_block,
    wait_stream_whole,
)
from tests.foundation.test_local_infra import _cli
from tests.support.wait import wait_until


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A cluster started by the CLI (`infra up --cluster`), stopped by `infra down`."""
    work = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "NATS_URL")}
    env.update(
        OFA_WORK_DIR=str(work),
        OFA_CLUSTER_BASE_PORT=str(free_port_block(25)),
        # Any port of the single-node pair: `down` must not touch a single node it never ran.
        OFA_KAFKA_PORT=str(local_infra.free_port()),
        LOG_FORMAT="text",
    )
    up = _cli(env, "up", "--cluster")
    cfg = from_env(local_infra.InfraConfig, "OFA_", env)
    state = local_cluster.read_state(cfg)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"env": env, "state": state, "up": up.stdout}
    finally:
        down = _cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped cluster" in down.stdout
    assert not any(local_infra.pid_alive(p) for p in [*state.kafka_pids, *state.nats_pids])


def test_each_node_is_its_own_running_process(cli_cluster: dict[str, Any]) -> None:
    state: local_cluster.ClusterState = cli_cluster["state"]
    pids = [*state.kafka_pids, *state.nats_pids]
    assert len(state.nodes) == 3 and len(set(pids)) == 6
    assert all(local_infra.pid_alive(p) for p in pids)
    status = _cli(cli_cluster["env"], "status", "--cluster")
    assert status.returncode == 0, status.stdout + status.stderr
    doc = msgspec.json.decode(status.stdout)
    assert [n["node"] for n in doc["cluster"]] == ["n1", "n2", "n3"]
    assert all(n["kafka"]["running"] and n["nats"]["running"] for n in doc["cluster"])
    assert f"KAFKA_BOOTSTRAP_SERVERS={state.kafka_bootstrap}" in cli_cluster["up"]


async def test_three_brokers_in_metadata(cli_cluster: dict[str, Any]) -> None:
    state: local_cluster.ClusterState = cli_cluster["state"]
    meta = await local_infra.describe_cluster(state.kafka_bootstrap)
    assert sorted(b["node_id"] for b in meta["brokers"]) == [1, 2, 3]
    assert meta["controller_id"] in (1, 2, 3)


def test_brokers_have_production_replication(cli_cluster: dict[str, Any]) -> None:
    for node in ("n1", "n2", "n3"):
        props = Path(_work(cli_cluster), f"kafka-{node}", "server.properties")
        text = props.read_text()
        for line in (
            "min.insync.replicas=2",
            "default.replication.factor=3",
            "offsets.topic.replication.factor=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "process.roles=broker,controller",
        ):
            assert line in text.splitlines(), f"{node}: {line} missing"
        assert text.count("@127.0.0.1:") == 3  # every node is a voter of the quorum


def _work(cli_cluster: dict[str, Any]) -> str:
    return str(Path(cli_cluster["env"]["OFA_WORK_DIR"]) / "cluster")


async def test_splitter_topic_code_creates_rf3_topics(cli_cluster: dict[str, Any]) -> None:
    state: local_cluster.ClusterState = cli_cluster["state"]
    s = from_env(SplitterSettings, "SPLIT_", {"SPLIT_TOPIC_REPLICATION": "3"})
    topic = f"t_cluster_rf_{uuid.uuid4().hex[:8]}"
    admin = TopicAdmin(state.kafka_bootstrap)
    await admin.start()
    try:
        assert await admin.ensure(topic, 4, s.topic_replication, {})
    finally:
        await admin.close()
    # Another broker may answer before the new topic's metadata reached it (a known race, also
    # the splitter's on a cluster: README Status): wait for every partition to be described.
    desc: dict[str, Any] = {}

    async def described() -> bool:
        nonlocal desc
        desc = await describe_topic(state.kafka_bootstrap, topic)
        return len(desc["partitions"]) == 4

    await wait_until(described, timeout=30, what=f"{topic} described with 4 partitions")
    for p in desc["partitions"]:
        assert sorted(p["replicas"]) == [1, 2, 3], p
        assert p["leader"] in (1, 2, 3)


async def test_stream_and_kv_have_a_leader_and_two_current_replicas(
    cli_cluster: dict[str, Any],
) -> None:
    state: local_cluster.ClusterState = cli_cluster["state"]
    s = from_env(
        BridgeSettings,
        "BRIDGE_",
        {"BRIDGE_REPLICAS": "3", "BRIDGE_MAX_BYTES": str(64 * 1024 * 1024)},
    )
    nc = await nats.connect(state.nats_url)
    try:
        js = nc.jetstream()
        layout = Layout()
        await ensure_streams(js, layout, s)
        kv = await ensure_registry(js, layout, s)
        # The edges' registry, as an edge creates it with the cluster's setting.
        edge = from_env(EdgeSettings, "EDGE_", {"EDGE_REGISTRY_REPLICAS": "3"})
        edges = await open_bucket(
            nc, layout.edges_bucket, edge.registry_ttl_s, edge.registry_replicas
        )
        # A freshly created R3 stream answers only once its group elected a leader (a write
        # before that gets "no responders"; the processes retry theirs): wait for it first.
        buckets = (layout.state_bucket, layout.bridges_bucket, layout.edges_bucket)
        for stream in (layout.stream, *(f"KV_{b}" for b in buckets)):
            leader, current = await wait_stream_whole(js, stream, 2, 60)
            assert leader and leader.startswith("ofa-n"), (stream, leader)
            assert current == 2, f"{stream}: {current} current followers"
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3
            assert info.cluster is not None and info.cluster.replicas is not None
            assert {r.name for r in info.cluster.replicas} | {leader} == {
                "ofa-n1",
                "ofa-n2",
                "ofa-n3",
            }
        await kv.put("probe", b"1")
        await edges.put("probe", b"1")
        ack = await js.publish(layout.stream_subject("A1", "x"), b"{}")
        assert ack.seq >= 1
    finally:
        await nc.close()


def test_cluster_ids_never_start_with_a_dash() -> None:
    # kafka-storage's parser takes "-xyz" for an option; one fresh format in 64 failed so.
    ids = {local_infra.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
