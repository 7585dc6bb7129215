"""The splitter in at_least_once mode, killed -9 mid-flow and restarted only after the stream's
JetStream duplicate window (2 s here) has passed: its replay writes copies into the derived
topics, and a JetStream consumer of the stream still gets each source record exactly once, in
per-asset order, because the bridge drops the copies by their source coordinates
(bridge/dedupe.py), not by the duplicate window."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from compose.local_infra import NatsProcess
from compose.simulator import Factory, simulate
from ofa_contract.layout import Layout, NatsHeaders
from tests.e2e.diagnose import _seq
from tests.e2e.stack import Stack, running_stack, wait_for
from tests.e2e.test_chaos import log_dir
from tests.helpers import Endpoints
from tests.support.jetstream import stored_messages

#: Seq of an asset's `workcenter` record: later records share one derived topic (ordered).
GROUPED_AT = next(
    i
    for i, r in enumerate(Factory(1, 1, helpers=False).registration(), 1)
    if b'"workcenter"' in r.value
)
WINDOW_S = 2.0
ENV = {
    "SPLIT_DELIVERY": "at_least_once",
    # No periodic commit: everything sent before the kill is replayed (copies guaranteed).
    "SPLIT_OFFSET_COMMIT_INTERVAL_MS": "600000",
    "BRIDGE_DUPLICATE_WINDOW_S": str(WINDOW_S),
}


async def read_stream(url: str, layout: Layout) -> dict[str, list[int]]:
    """Every stored message of the stream, in stream order: asset -> the seqs it carries."""
    out: dict[str, list[int]] = defaultdict(list)
    for m in await stored_messages(url, layout.stream, layout.stream_subjects(), idle_timeout=10):
        seq = _seq(m.data)
        if seq is not None:
            out[(m.headers or {}).get(NatsHeaders.ASSET, "")].append(seq)
    return dict(out)


async def source_duplicates(stack: Stack) -> float:
    """ofa_bridge_source_duplicates_total over every bridge worker of the stack."""
    total = 0.0
    async with httpx.AsyncClient(timeout=5) as http:
        for port in stack.settings.bridge_ops_ports:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for fam in text_string_to_metric_families(text):
                if fam.name == "ofa_bridge_source_duplicates":
                    total += sum(s.value for s in fam.samples if s.name.endswith("_total"))
    return total


async def test_splitter_replay_after_the_duplicate_window_reaches_clients_once(
    infra: Endpoints, nats_private: NatsProcess, unique: str, tmp_path: Path
) -> None:
    factory = Factory(8, 2, prefix=f"D{unique}", helpers=False)
    async with running_stack(infra.kafka, nats_private, unique, log_dir(tmp_path), env=ENV) as st:
        stop = asyncio.Event()
        sim = asyncio.create_task(
            simulate(factory, infra.kafka, st.input_topic, rate=200, stop=stop)
        )
        try:

            async def some_bridged() -> bool:
                assert not sim.done(), sim
                got = await read_stream(nats_private.url, st.layout)
                return sum(len(v) for v in got.values()) >= 300

            await wait_for(some_bridged, 60, "300 records in the stream")
            await st.kill("splitter")
            # The outage itself, longer than the stream's duplicate window (not a sync point).
            await asyncio.sleep(WINDOW_S * 2)
            await st.restart("splitter")

            async def replayed() -> bool:
                return await source_duplicates(st) > 0

            await wait_for(replayed, 60, "the bridges to drop the replayed copies")
            stop.set()
            await asyncio.wait_for(sim, 30)
            final = dict(factory.seq)

            async def complete() -> bool:
                got = await read_stream(nats_private.url, st.layout)
                return all(got.get(a) and max(got[a]) >= last for a, last in final.items())

            await wait_for(complete, 90, "every asset's last record in the stream", interval=1)
            got = await read_stream(nats_private.url, st.layout)
            dropped = await source_duplicates(st)
        finally:
            stop.set()
            if not sim.done():
                sim.cancel()
    print(f"{sum(final.values())} records, {dropped:.0f} copies dropped by source coordinates")
    for asset, last in final.items():
        seqs = got[asset]
        assert sorted(seqs) == list(range(1, last + 1)), f"{asset}: not each record once"
        # Order holds per derived topic: the records after the workcenter record share one.
        later = [s for s in seqs if s >= GROUPED_AT]
        assert later == sorted(later), f"{asset}: out of order"
