"""A pool of `ofa-serving bridge` processes: singleton per group, failover, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import nats
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from bridge.settings import BridgeSettings
from compose.local_infra import NatsProcess, free_port
from ofa_contract.layout import Layout, NatsHeaders
from ofa_contract.registry import BridgeEntry
from tests.bridge.support import (
    bridge_case,
    env_for,
    read_stream,
    stream_holds,
)
from tests.helpers import Endpoints
from tests.support.procs import ComponentProcess
from tests.support.wait import wait_until

GROUPS = [f"WC{i}" for i in range(5)]


async def describe(kafka: str, group_id: str) -> tuple[str, dict[str, dict[str, list[int]]]]:
    """(state, {client_id: {topic: partitions}}) of a consumer group, from the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        resp = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    _, _, state, _, _, members = resp[0].groups[0][:6]
    out: dict[str, dict[str, list[int]]] = {}
    for member in members:
        client_id, assignment = member[1], member[4]
        topics: dict[str, list[int]] = {}
        if assignment:
            for topic, parts in ConsumerProtocol.ASSIGNMENT.decode(assignment).assignment:
                topics[topic] = sorted(parts)
        out[client_id] = topics
    return state, out


async def stable_assignment(
    kafka: str, s: BridgeSettings, layout: Layout, members: int, timeout: float = 60
) -> dict[str, dict[str, list[int]]]:
    """Wait until the group is Stable with ``members`` members covering every group topic."""
    result: dict[str, dict[str, list[int]]] = {}
    wanted = {layout.group_topic(g) for g in GROUPS}

    async def ok() -> bool:
        nonlocal result
        try:
            state, result = await describe(kafka, s.consumer_group)
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            # A fresh broker elects the group's coordinator only once the group first joins.
            return False
        covered = {t for topics in result.values() for t in topics}
        return state == "Stable" and len(result) == members and covered == wanted

    await wait_until(
        ok, timeout=timeout, what=f"a stable assignment over {members} workers", interval=0.5
    )
    return result


def owners(assignment: dict[str, dict[str, list[int]]]) -> dict[str, str]:
    """topic -> the one client owning ALL of its partitions (asserted)."""
    out: dict[str, str] = {}
    for client, topics in assignment.items():
        for topic, parts in topics.items():
            assert topic not in out, f"{topic} split between {out[topic]} and {client}"
            assert parts == [0, 1, 2], f"{client} owns only partitions {parts} of {topic}"
            out[topic] = client
    return out


class Flow:
    """A steady, bounded flow into the derived topics, with a per-asset sequence number."""

    def __init__(self, kafka: str, layout: Layout, rate: int, seconds: float) -> None:
        self.kafka = kafka
        self.layout = layout
        self.rate = rate
        self.seconds = seconds
        self.sent: dict[str, int] = {}
        self.total = 0

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        assets = [(g, f"{g}-asset-{i}") for g in GROUPS for i in range(3)]
        try:
            t0 = time.monotonic()
            tick = 0
            while time.monotonic() - t0 < self.seconds:
                futs = []
                for _ in range(max(1, self.rate // 20)):
                    g, a = assets[tick % len(assets)]
                    tick += 1
                    seq = self.sent.get(a, 0)
                    value = msgspec.json.encode(
                        {"ID": "count", "VALUE": seq, "TYPE": "Samples", "attributes": {"seq": seq}}
                    )
                    futs.append(
                        await producer.send(self.layout.group_topic(g), value, key=a.encode())
                    )
                    self.sent[a] = seq + 1
                await asyncio.gather(*futs)
                self.total = sum(self.sent.values())
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[list[ComponentProcess]]:
    procs: list[ComponentProcess] = []
    yield procs
    for p in procs:
        p.kill()


def _spawn(
    pool: list[ComponentProcess],
    s: BridgeSettings,
    layout: Layout,
    infra: Endpoints,
    nats_url: str,
    tmp: Path,
    wid: str,
) -> ComponentProcess:
    port = free_port()
    settings = msgspec.structs.replace(s, worker_id=wid, ops_port=port)
    env = env_for(settings, layout, infra.kafka, nats_url)
    p = ComponentProcess(["bridge"], env, tmp, name=wid, ops_url=f"http://127.0.0.1:{port}")
    p.start_nowait()
    pool.append(p)
    return p


async def _check_stream(nats_url: str, layout: Layout, flow: Flow) -> None:
    msgs = await read_stream(nats_url, layout.stream, layout.stream_subjects())
    ids = [m.headers[NatsHeaders.MSG_ID] for m in msgs if m.headers]
    assert len(ids) == len(set(ids)), "a Kafka record was stored twice"
    assert len(msgs) == flow.total, f"{len(msgs)} stored, {flow.total} produced"
    per_asset: dict[str, list[int]] = {}
    for m in msgs:
        asset = (m.headers or {})[NatsHeaders.ASSET]
        per_asset.setdefault(asset, []).append(msgspec.json.decode(m.data)["attributes"]["seq"])
    assert set(per_asset) == set(flow.sent)
    for asset, seqs in per_asset.items():
        assert seqs == list(range(flow.sent[asset])), f"{asset}: lost, duplicated or reordered"


@pytest.mark.parametrize(
    ("kills", "seconds"),
    [
        pytest.param(1, 12, id="one-kill"),
        pytest.param(4, 60, id="repeated-kills", marks=pytest.mark.slow),
    ],
)
async def test_pool_singleton_failover_exactly_once(
    infra: Endpoints,
    nats_private: NatsProcess,
    unique: str,
    tmp_path: Path,
    pool: list[ComponentProcess],
    kills: int,
    seconds: float,
) -> None:
    s, layout, _ = await bridge_case(infra.kafka, unique, GROUPS, partitions=3)
    for i in range(3):
        _spawn(pool, s, layout, infra, nats_private.url, tmp_path, f"w{i}-{unique}")
    first = owners(await stable_assignment(infra.kafka, s, layout, 3))
    loads = sorted([list(first.values()).count(c) for c in set(first.values())])
    assert loads == [1, 2, 2], f"unbalanced: {first}"
    await _check_registry_and_ops(nats_private.url, layout, first, pool)

    flow = Flow(infra.kafka, layout, rate=400, seconds=seconds)
    flow_task = asyncio.create_task(flow.run())
    try:
        current = first
        for k in range(kills):
            await wait_until(
                lambda: stream_holds(nats_private.url, layout.stream, 200),
                timeout=30,
                what="the flow to reach the stream",
            )
            # Kill -9 the owner of WC0 (varies as groups move): a crash mid-flow.
            victim_client = current[layout.group_topic(GROUPS[k % len(GROUPS)])]
            victim = next(p for p in pool if p.proc and f"ofa-bridge-{_wid(p)}" == victim_client)
            victim.kill()
            pool.remove(victim)
            after = owners(await stable_assignment(infra.kafka, s, layout, 2))
            for topic, client in current.items():
                if client != victim_client:
                    assert after[topic] == client, f"{topic} moved although its owner lived"
                else:
                    assert after[topic] != victim_client
            # Restart a worker (a new member), the pool is back to three.
            _spawn(pool, s, layout, infra, nats_private.url, tmp_path, f"w{3 + k}-{unique}")
            current = owners(await stable_assignment(infra.kafka, s, layout, 3))
            moved = [t for t in current if current[t] != after[t]]
            assert len(moved) <= 2, f"a join moved more than balance needs: {moved}"
        await flow_task
        await wait_until(
            lambda: stream_holds(nats_private.url, layout.stream, flow.total),
            timeout=60,
            what=f"all {flow.total} records in the stream",
        )
        await _check_stream(nats_private.url, layout, flow)
    finally:
        flow_task.cancel()
        codes = [await p.terminate(30) for p in pool]
        tails = "\n".join(p.log_tail(500) for p in pool)
    assert codes == [0] * len(pool), tails


async def _check_registry_and_ops(
    nats_url: str, layout: Layout, owner_map: dict[str, str], pool: list[ComponentProcess]
) -> None:
    """The ofa_bridges registry agrees with Kafka's assignment; /ready and /metrics answer."""
    want: dict[str, list[str]] = {}
    for topic, client in owner_map.items():
        want.setdefault(client.removeprefix("ofa-bridge-"), []).append(
            layout.group_from_topic(topic)
        )
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().key_value(layout.bridges_bucket)

        async def agrees() -> bool:
            got: dict[str, list[str]] = {}
            for wid in want:
                try:
                    entry = msgspec.json.decode((await kv.get(wid)).value or b"", type=BridgeEntry)
                except Exception:
                    return False
                got[wid] = sorted(entry.groups)
            return got == {k: sorted(v) for k, v in want.items()}

        await wait_until(agrees, timeout=15, what=f"the registry to show {want}")
    finally:
        await nc.close()
    async with httpx.AsyncClient(timeout=10) as http:
        for p in pool:
            assert await p.status("/ready") == 200, p.log_tail()
            metrics = await http.get(f"{p.ops_url}/metrics")
            assert metrics.status_code == 200 and "ofa_bridge_owned_groups" in metrics.text


def _wid(p: ComponentProcess) -> str:
    return p.env["BRIDGE_WORKER_ID"]
