"""Grouping by OpenFactory's UNS map against the real broker: records on any partition (the
gateway producer's CRC32 is not murmur2), no registration records left in the input, live map
changes, and the router (its group index, /groups, /asset_stream redirects) agreeing with the
splitter on every asset."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec

from compose.local_infra import NatsProcess
from ofa_contract.topics import DEFAULT_GROUP
from tests.helpers import Endpoints
from tests.router.harness import Stack, client
from tests.splitter.support import (
    Names,
    make_input,
    names,
    produce_to,
    read_outputs,
    running_splitter,
    seq_of,
    settings_for,
    uns_value,
    wait_caught_up,
)
from tests.support.kafka import create_topics
from tests.support.wait import wait_until


def record(asset: str, seq: int, item: str = "Temp", value: Any = None) -> bytes:
    """An ofa_assets value carrying the test's per-asset sequence number."""
    body = {"ID": item, "VALUE": value if value is not None else seq, "TYPE": "Samples"}
    return msgspec.json.encode(
        {**body, "attributes": {"seq": seq, "timestamp": "2026-12-02T10:00:00Z"}}
    )


def last_groups(out: list[Any], n: Names) -> dict[str, str | None]:
    """Per asset, the group of its highest-seq output record (None = the default group)."""
    best: dict[str, tuple[int, str | None]] = {}
    for r in out:
        asset = r.key.decode()
        group: str | None = n.layout.group_from_topic(r.topic)
        if group == DEFAULT_GROUP:
            group = None
        if seq_of(r) > best.get(asset, (0, None))[0]:
            best[asset] = (seq_of(r), group)
    return {a: g for a, (_, g) in best.items()}


def seqs_by_group(out: list[Any], n: Names, asset: str) -> dict[str, list[int]]:
    """The seq numbers of one asset's outputs, per group, sorted."""
    got: dict[str, list[int]] = {}
    for r in out:
        if r.key == asset.encode():
            got.setdefault(n.layout.group_from_topic(r.topic), []).append(seq_of(r))
    return {g: sorted(s) for g, s in got.items()}


async def test_uns_map_groups_every_partition_and_the_router_agrees(
    infra: Endpoints, nats_private: NatsProcess, unique: str
) -> None:
    n = names(unique)
    uns = n.uns
    await make_input(infra.kafka, n, partitions=3)
    await create_topics(infra.kafka, [uns], partitions=2, config={"cleanup.policy": "compact"})
    moved, plain, gone, tomb, fallback = (f"U{unique}-{x}" for x in ("A", "B", "G", "T", "P"))
    await produce_to(
        infra.kafka,
        uns,
        [
            (moved, uns_value(moved, "WC-A"), None),
            (plain, uns_value(plain, "Halle-1"), None),
            (gone, uns_value(gone, "WC-A"), None),
            (gone, uns_value(gone, None), None),  # deregistered
            (tomb, uns_value(tomb, "WC-T"), None),
            (tomb, None, None),  # tombstone
        ],
    )
    # The input holds no registration records any more (retention), only data; `moved` is on
    # every partition and carries a workcenter record of its own, which the map overrides.
    await produce_to(
        infra.kafka,
        n.input,
        [
            (moved, record(moved, 1), 0),
            (moved, record(moved, 2), 1),
            (moved, record(moved, 3), 2),
            (moved, record(moved, 4, "workcenter", "WC-Z"), 1),
            (moved, record(moved, 5), 0),
            (plain, record(plain, 1), 2),
            (plain, record(plain, 2), 2),
            (gone, record(gone, 1), 0),
            (gone, record(gone, 2, "workcenter", "WC-G"), 0),
            (gone, record(gone, 3), 0),
            (tomb, record(tomb, 1), 1),
            (fallback, record(fallback, 1), 1),
            (fallback, record(fallback, 2, "workcenter", "WC-P"), 1),
            (fallback, record(fallback, 3), 1),
        ],
    )
    assert settings_for(n).grouping == "uns"  # the default
    async with running_splitter(infra.kafka, n) as splitter:
        await wait_caught_up(infra.kafka, n)
        out = await read_outputs(infra.kafka, n)
        assert seqs_by_group(out, n, moved) == {"WC-A": [1, 2, 3, 4, 5]}, [
            (r.topic, r.partition, r.offset, r.headers, seq_of(r))
            for r in out
            if r.key == moved.encode()
        ]
        assert seqs_by_group(out, n, plain) == {"Halle-1": [1, 2]}
        assert seqs_by_group(out, n, gone) == {DEFAULT_GROUP: [1], "WC-G": [2, 3]}
        assert seqs_by_group(out, n, tomb) == {DEFAULT_GROUP: [1]}
        assert seqs_by_group(out, n, fallback) == {DEFAULT_GROUP: [1], "WC-P": [2, 3]}

        # A live change of the map moves the asset's next records (here on partition 0 only,
        # so changelog partitions 1 and 2 still hold the older group of `moved`).
        await produce_to(infra.kafka, uns, [(moved, uns_value(moved, "WC-C"), None)])
        strategy: Any = splitter.strategy

        async def seen() -> bool:
            return bool(strategy.table.get(moved) == "WC-C")

        await wait_until(seen, timeout=30, what="the splitter to read the map change")
        await produce_to(infra.kafka, n.input, [(moved, record(moved, 6), 0)])
        await wait_caught_up(infra.kafka, n)
        out = await read_outputs(infra.kafka, n)
        assert seqs_by_group(out, n, moved) == {"WC-A": [1, 2, 3, 4, 5], "WC-C": [6]}
    await check_router_agrees(infra, nats_private, unique, n, out)


async def check_router_agrees(
    infra: Endpoints, nats: NatsProcess, unique: str, n: Names, out: list[Any]
) -> None:
    """A router started now (its index restored from the changelog) redirects every asset to
    the group the splitter wrote its last record to, 404 for the default group; /groups lists
    every group the splitter wrote to."""
    expected = last_groups(out, n)
    stack = Stack(infra.kafka, nats.url, unique)
    stack.changelog, stack.groups_topic = n.changelog, n.groups
    await stack.setup_data(topics=False)
    try:
        await stack.register_edge("e1", "http://127.0.0.1:9", groups=["*"])
        await stack.start_router(mode="redirect")
        svc = stack.service
        assert svc is not None
        await wait_until(_loaded(svc), timeout=30, what="the router's group index to load")
        await stack.wait_edges(1)
        assert {a: svc.index.group_of(a) for a in expected} == expected
        async with client(stack.url) as c:
            for asset, group in expected.items():
                r = await c.get("/asset_stream", params={"asset_uuid": asset})
                if group is None:
                    assert r.status_code == 404, (asset, r.text)
                    continue
                assert r.status_code == 307, (asset, r.text)
                assert unquote(urlsplit(r.headers["location"]).path) == (
                    f"/group/{group}/asset_stream"
                )
            listed = {g["group"]: g["assets"] for g in (await c.get("/groups")).json()["groups"]}
        for group in {n.layout.group_from_topic(r.topic) for r in out}:
            assert listed[group] == sum(g == group for g in expected.values()), group
    finally:
        await stack.stop()


def _loaded(svc: Any) -> Any:
    async def loaded() -> bool:
        return bool(svc.index.caught_up.is_set())

    return loaded
