"""OpenFactory's NATS layout through the whole stack (splitter, bridge pool, edge, router as
processes on real Kafka and a private nats-server): OpenFactory's real records reach SSE and the
OpenFactory-layout subject, and a client written from OpenFactory's protocol gets every event
once and in order across a kill -9 of the bridge worker that owns its asset's group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from compose.local_infra import NatsProcess
from ofa_contract import openfactory
from ofa_contract.layout import Layout
from ofa_contract.topics import DEFAULT_GROUP
from tests.e2e.stack import Stack, running_stack
from tests.e2e.test_chaos import log_dir
from tests.helpers import Endpoints
from tests.openfactory.subscriber import OpenFactorySubscriber
from tests.openfactory.test_layout import real_samples
from tests.sse import SseParser
from tests.support.kafka import consume_all, create_topics, produce
from tests.support.wait import wait_until


class SseCollector:
    """One SSE client of one asset, replaying the asset's history from the
    start (``Last-Event-ID: 0``); keeps every ``asset_update`` data. Retries while the asset is
    not known yet (404)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.data: list[str] = []
        self.refused: list[int] = []

    async def run(self, client: httpx.AsyncClient) -> None:
        while True:
            async with client.stream("GET", self.url, headers={"Last-Event-ID": "0"}) as resp:
                if resp.status_code != 200:
                    self.refused.append(resp.status_code)
                    await resp.aread()
                    await asyncio.sleep(0.2)
                    continue
                parser = SseParser()
                async for chunk in resp.aiter_raw():
                    for ev in parser.feed(chunk):
                        if ev.event == "asset_update":
                            self.data.append(ev.data)
                return


async def _group_topic_ready(kafka: str, unique: str) -> None:
    """Create the derived topic of the default group (every asset here is ungrouped) before the
    stack starts. Left to the splitter, it is created when the first record arrives, and on a
    loaded machine the splitter's first transaction to it can fail with NotLeaderForPartition
    and stop the splitter (a splitter issue, reported; not what these tests are about)."""
    topic = Layout().namespaced(f"t_e2e_{unique}_").group_topic(DEFAULT_GROUP)
    await create_topics(kafka, [topic], 3)


def _expected_openfactory(value: bytes) -> tuple[str, dict[str, Any]]:
    """(id, payload without the three added attributes) as the protocol describes it."""
    obj = json.loads(value)
    id_key = next(k for k in obj if k.lower() == "id")
    item = obj.pop(id_key)
    return item, obj


async def test_real_records_reach_sse_and_openfactory_subjects(
    infra: Endpoints, nats_private: NatsProcess, unique: str, tmp_path: Path
) -> None:
    samples = real_samples()
    by_key: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_key.setdefault(s["key"], []).append(s)
    # No kills here: the default session timeouts, which a loaded machine keeps.
    env = {"SPLIT_SESSION_TIMEOUT_MS": "30000", "SPLIT_HEARTBEAT_INTERVAL_MS": "3000"}
    await _group_topic_ready(infra.kafka, unique)
    async with running_stack(
        infra.kafka, nats_private, unique, log_dir(tmp_path), bridges=1, edges=1, env=env
    ) as stack:
        sdk = {k: OpenFactorySubscriber(nats_private.url, k) for k in by_key}
        for sub in sdk.values():
            await sub.start()
        records = [
            (
                s["key"].encode(),
                s["value"].encode(),
                [(k, v.encode()) for k, v in s["headers"].items()],
            )
            for s in samples
        ]
        await produce(infra.kafka, stack.input_topic, records)
        # The stored timestamps, read back: aiokafka's RecordMetadata gives every record of a
        # batch the first record's CreateTime (producer/message_accumulator.py, done()).
        stored = await consume_all(infra.kafka, [stack.input_topic], read_committed=False)
        times: dict[str, list[int]] = {}
        for rec in sorted(stored, key=lambda r: (r.partition, r.offset)):
            times.setdefault(rec.key.decode(), []).append(rec.timestamp)

        async def all_published() -> bool:
            return all(len(sdk[k].received) >= len(v) for k, v in by_key.items())

        await wait_until(all_published, timeout=180, what="every record on its OpenFactory subject")
        # From the edge: these assets have no workcenter, so the router has no group for them.
        edge = stack.edge_urls[0]
        sse = {k: SseCollector(f"{edge}/asset_stream?asset_uuid={k}") for k in by_key}
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=60.0)) as http:
            tasks = [asyncio.create_task(c.run(http)) for c in sse.values()]
            try:

                async def all_streamed() -> bool:
                    return all(len(sse[k].data) >= len(v) for k, v in by_key.items())

                try:
                    await wait_until(all_streamed, timeout=120, what="every record on SSE")
                except AssertionError as exc:
                    refused = {k: c.refused[-3:] for k, c in sse.items() if c.refused}
                    raise AssertionError(f"{exc}; refused: {refused}") from None
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                        await t
        for sub in sdk.values():
            await sub.close()
    for key, group in by_key.items():
        # SSE: the record's bytes, unchanged.
        assert sse[key].data == [s["value"] for s in group], key
        # OpenFactory's layout: <KEY>.<ID>, the record minus its id plus three attributes.
        got = sdk[key].received
        assert len(got) == len(group), key
        for s, r, source_ms in zip(group, got, times[key], strict=True):
            item, expected = _expected_openfactory(s["value"].encode())
            assert r.subject == f"{key.upper()}.{item}"
            assert r.item_id == item
            payload = json.loads(r.raw)
            added = {
                k: payload["attributes"].pop(k)
                for k in ("asset_forwarder_timestamp", "kafka_timestamp", "kafka_timestamp_type")
            }
            assert payload == expected, key
            # The ofa_assets record's timestamp, as OpenFactory's forwarder reports it.
            assert added["kafka_timestamp"] == openfactory.iso_ms(source_ms)
            assert added["kafka_timestamp_type"] == "producer"
            assert added["kafka_timestamp"] <= added["asset_forwarder_timestamp"]


def _seq_record(asset: str, seq: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    # Two data items per asset, both carrying the asset's running sequence number.
    item = "count" if seq % 2 else "temp"
    body = {"id": item, "value": seq, "type": "Samples", "attributes": {"seq": seq}}
    return asset.encode(), msgspec.json.encode(body), []


async def _owner(stack: Stack) -> str:
    """The bridge process that owns the (single) group's topic, from its /metrics."""
    async with httpx.AsyncClient(timeout=5) as http:
        for name in stack.names():
            if not name.startswith("bridge-") or name in stack.dead():
                continue
            url = stack.by_name[name].ready_url
            assert url is not None
            body = (await http.get(url.replace("/ready", "/metrics"))).text
            if "\nofa_bridge_owned_groups 1.0" in body:
                return name
    raise AssertionError("no bridge owns the group")


async def _metric(stack: Stack, name: str, metric: str) -> float:
    url = stack.by_name[name].ready_url
    assert url is not None
    async with httpx.AsyncClient(timeout=5) as http:
        body = (await http.get(url.replace("/ready", "/metrics"))).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(metric) and not line.startswith("#")
    )


async def test_openfactory_client_gets_every_event_once_in_order_across_bridge_kill9(
    infra: Endpoints, nats_private: NatsProcess, unique: str, tmp_path: Path
) -> None:
    asset = f"of-asset-{unique}"  # lower case: OpenFactory's SDK subscribes to the upper case
    # Offsets committed rarely: the next owner replays everything the killed one bridged, so the
    # stream reports those as duplicates, and none may reach the client a second time.
    env = {"BRIDGE_COMMIT_INTERVAL_MS": "120000"}
    await _group_topic_ready(infra.kafka, unique)
    async with running_stack(
        infra.kafka, nats_private, unique, log_dir(tmp_path), bridges=2, edges=1, env=env
    ) as stack:
        sub = OpenFactorySubscriber(nats_private.url, asset)
        await sub.start()
        first = [_seq_record(asset, i) for i in range(200)]
        await produce(infra.kafka, stack.input_topic, first)

        async def got(n: int) -> bool:
            return len(sub.received) >= n

        await wait_until(lambda: got(len(first)), timeout=60, what="the first batch")
        victim = await _owner(stack)
        await stack.kill(victim)
        # Written while the group has no live owner: the next owner must bridge these after
        # replaying (and suppressing) the first batch.
        second = [_seq_record(asset, i) for i in range(len(first), 2 * len(first))]
        await produce(infra.kafka, stack.input_topic, second)
        await wait_until(
            lambda: got(2 * len(first)), timeout=90, what="the second batch via the next owner"
        )
        survivor = await _owner(stack)
        assert survivor != victim
        replayed = await _metric(stack, survivor, "ofa_bridge_duplicates_dropped_total")
        bridged = await _metric(stack, survivor, "ofa_bridge_records_bridged_total")
        # A round trip on the client's connection: anything the bridge sent is delivered.
        assert sub._nc is not None
        await sub._nc.flush()
        await sub.close()
        assert [d for d in stack.dead() if d != victim] == []
    assert sub.seqs() == list(range(2 * len(first))), "lost, duplicated or reordered"
    assert replayed > 0, f"the next owner replayed nothing ({bridged} bridged): no failover test"
    assert {r.item_id for r in sub.received} == {"count", "temp"}
    assert all(r.subject == f"{asset.upper()}.{r.item_id}" for r in sub.received)


async def test_loss_window_across_repeated_kill9_mid_flow(
    infra: Endpoints, nats_private: NatsProcess, unique: str, tmp_path: Path
) -> None:
    """Measures the loss window: records stored by a worker killed before it published them in
    OpenFactory's layout. Never a duplicate, never out of order; what is missed is counted."""
    kills = 3
    assets = [f"loss-{unique}-{i}" for i in range(3)]
    await _group_topic_ready(infra.kafka, unique)
    async with running_stack(
        infra.kafka, nats_private, unique, log_dir(tmp_path), bridges=2, edges=1
    ) as stack:
        subs = [OpenFactorySubscriber(nats_private.url, a) for a in assets]
        for s in subs:
            await s.start()
        sent = dict.fromkeys(assets, 0)
        stop = asyncio.Event()

        async def flow() -> None:
            # ~300 records/s, in small batches, until stopped.
            while not stop.is_set():
                batch = []
                for a in assets:
                    for _ in range(5):
                        batch.append(_seq_record(a, sent[a]))
                        sent[a] += 1
                await produce(infra.kafka, stack.input_topic, batch)
                await asyncio.sleep(0.05)

        producer = asyncio.create_task(flow())
        try:
            for _ in range(kills):
                before = _received(subs)

                async def flowing(before: int = before) -> bool:
                    return _received(subs) > before + 20

                await wait_until(
                    flowing, timeout=60, what="the OpenFactory-layout flow", interval=0.1
                )
                victim = await _owner(stack)
                await stack.kill(victim)
                await stack.restart(victim)
            await asyncio.sleep(2)  # bounded extra flow after the last restart
        finally:
            stop.set()
            await producer
        final = dict(sent)
        t0 = time.monotonic()

        async def tail_arrived() -> bool:
            return all(s.received and s.seqs()[-1] == final[s.asset_uuid] - 1 for s in subs)

        await wait_until(tail_arrived, timeout=90, what="the last record of every asset")
        for s in subs:
            await s.close()
    missed = 0
    for s in subs:
        seqs = s.seqs()
        assert len(seqs) == len(set(seqs)), f"{s.asset_uuid}: duplicates"
        assert seqs == sorted(seqs), f"{s.asset_uuid}: out of order"
        missed += final[s.asset_uuid] - len(seqs)
    total = sum(final.values())
    print(
        f"\nOpenFactory-layout loss window: {missed} of {total} records missed across {kills} "
        f"kill -9 of the owning bridge ({missed / kills:.1f} per kill); tail in "
        f"{time.monotonic() - t0:.1f}s"
    )
    # Bounded by what can be in flight (stored, not yet acknowledged) when a worker dies.
    assert missed <= kills * 1024


def _received(subs: list[OpenFactorySubscriber]) -> int:
    return sum(len(s.received) for s in subs)
