"""Hostile input mid-flow: every bad record kind of the contract's samples plus
hypothesis-generated garbage is written to the input topic while the simulator streams and SSE
clients follow assets through the router. Every bad record must land in the dead-letter topic
with its source coordinates and its original bytes, nothing else may go there, the clients must
still get every event exactly once and in order, and no component may restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from compose.local_infra import NatsProcess
from compose.simulator import Factory, simulate
from ofa_contract.layout import KafkaHeaders
from tests.e2e.followers import Follower, cancel_all, check
from tests.e2e.stack import running_stack, wait_for
from tests.e2e.test_chaos import GROUPED_AT, log_dir
from tests.helpers import (
    Endpoints,
    consume_all,
    create_topics,
    load_samples,
    produce,
    sample_record,
)

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]

_json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
_json = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
_not_id = st.text(max_size=12).filter(lambda k: k.lower() != "id")


def _bad_values(keys: list[str]) -> st.SearchStrategy[Raw]:
    """Records that break the contract by construction (never by asking the code under test)."""
    key = st.sampled_from(keys).map(str.encode)
    enc = msgspec.json.encode
    not_json = st.binary(max_size=200).map(lambda b: b"\x00" + b)
    not_object = st.one_of(_json_scalar, st.lists(_json, max_size=4)).map(enc)
    no_id = st.dictionaries(_not_id, _json, max_size=6).map(enc)
    bad_id = st.sampled_from(["ID", "id", "Id"]).flatmap(
        lambda k: st.one_of(st.just(""), st.integers(), st.none(), st.lists(st.integers())).map(
            lambda v: enc({k: v, "VALUE": 1})
        )
    )
    good = enc({"ID": "avail", "VALUE": "AVAILABLE", "TYPE": "Events", "attributes": {}})
    return st.one_of(
        st.tuples(key, not_json | not_object | no_id | bad_id, st.just([])),
        st.tuples(st.just(None), st.just(good), st.just([])),  # no key
        st.tuples(st.binary(max_size=20).map(lambda b: b"\xff" + b), st.just(good), st.just([])),
    )


def generated_garbage(keys: list[str], n: int) -> list[Raw]:
    """``n`` distinct bad records drawn by hypothesis."""
    out: list[Raw] = []

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(_bad_values(keys))
    def collect(rec: Raw) -> None:
        out.append(rec)

    collect()
    return out


async def test_bad_records_mid_flow_go_to_the_dlq_and_disturb_nothing(
    infra: Endpoints, nats_private: NatsProcess, unique: str, tmp_path: Path
) -> None:
    factory = Factory(12, 2, seed=11)
    followed = factory.assets[:6]
    samples = [sample_record(s) for s in load_samples() if s["note"].startswith("BAD")]
    assert len(samples) >= 6, "the samples file lost its bad records"
    garbage = generated_garbage(followed, 300)
    bad = samples + garbage
    # The 2 MiB sample needs an input topic that accepts it (OpenFactory's may); created before
    # the stack, which would otherwise create it with the broker's defaults.
    input_topic = f"t_e2e_in_{unique}"
    await create_topics(infra.kafka, [input_topic], 6, {"max.message.bytes": "8388608"})
    async with running_stack(infra.kafka, nats_private, unique, log_dir(tmp_path)) as stack:
        assert stack.input_topic == input_topic
        pids = stack.pids()
        stop_flow = asyncio.Event()
        sim = asyncio.create_task(
            simulate(factory, infra.kafka, stack.input_topic, rate=300, stop=stop_flow)
        )
        followers = [
            Follower(a, f"{stack.router_url}/asset_stream?asset_uuid={a}") for a in followed
        ]
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=20.0)) as http:
            tasks = [
                asyncio.create_task(f.run(http, lambda a: factory.seq.get(a, 0))) for f in followers
            ]
            try:

                async def live() -> bool:
                    return all(f.connect_seq is not None for f in followers)

                await wait_for(live, 60, "clients live")
                t0 = time.monotonic()
                # Interleaved with the flow, in the followed assets' partitions.
                metas = []
                for i in range(0, len(bad), 50):
                    metas += await produce(infra.kafka, stack.input_topic, bad[i : i + 50])
                    await asyncio.sleep(0.2)
                await asyncio.sleep(max(0.0, 5 - (time.monotonic() - t0)))  # flow goes on
                stop_flow.set()
                await asyncio.wait_for(sim, 30)
                final = {a: factory.seq[a] for a in followed}

                async def drained() -> bool:
                    return all(f.seqs and max(f.seqs) >= final[f.asset] for f in followers)

                await wait_for(drained, 60, "every client to get its asset's last event")
            finally:
                await cancel_all(tasks)
                stop_flow.set()
        dlq = await consume_all(infra.kafka, [stack.dlq_topic], expect=len(bad), timeout=60)
        parked: dict[tuple[int, int], Any] = {}
        for r in dlq:
            h = dict(r.headers)
            assert h[KafkaHeaders.SRC_TOPIC] == stack.input_topic.encode()
            assert h.get(KafkaHeaders.ERROR_KIND), h
            parked[(int(h[KafkaHeaders.SRC_PARTITION]), int(h[KafkaHeaders.SRC_OFFSET]))] = r
        for (key, value, _), m in zip(bad, metas, strict=True):
            r = parked.get((m.partition, m.offset))
            assert r is not None, (
                f"bad record {key!r}:{(value or b'')[:60]!r} at {m.partition}@{m.offset} "
                "not in the DLQ"
            )
            assert r.key == key and (r.value or b"") == (value or b""), (key, (value or b"")[:60])
        assert len(dlq) == len(bad), f"{len(dlq) - len(bad)} good records in the DLQ"
        for f in followers:
            v = check(f, final[f.asset], [GROUPED_AT])
            assert not (v.duplicates or v.missing or v.out_of_order or v.id_regressions), v
            assert not f.resets
        assert not stack.dead()
        assert stack.pids() == pids, "a component restarted"
        print(
            f"\n{len(bad)} bad records ({len(samples)} from the samples, {len(garbage)} generated) "
            f"all in the DLQ with coordinates; {sum(len(f.seqs) for f in followers)} events to "
            f"{len(followers)} clients intact; no restart"
        )
