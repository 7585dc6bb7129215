"""The simulator writes what OpenFactory writes, and every record passes the contract."""

from __future__ import annotations

import subprocess
import sys

import msgspec

from compose.simulator import Factory, simulate
from ofa_contract.events import decode_record
from tests.helpers import Endpoints, consume_all, create_topics


def test_factory_registration_assigns_every_asset_a_workcenter() -> None:
    f = Factory(7, 3, helpers=True)
    records = list(f.registration())
    wc_records = {
        r.key: msgspec.json.decode(r.value)["VALUE"]
        for r in records
        if msgspec.json.decode(r.value).get("ID") == "workcenter"
    }
    assert wc_records == f.workcenter
    assert set(wc_records.values()) == {"WC1", "WC2", "WC3"}
    helper_keys = {r.key for r in records if r.key.endswith("-AGENT")}
    assert helper_keys == {f"{a}-AGENT" for a in f.assets}
    assert not any(
        r.key in helper_keys
        for r in records
        if msgspec.json.decode(r.value).get("ID") == "workcenter"
    )


async def test_simulator_output_decodes_and_is_complete(infra: Endpoints, unique: str) -> None:
    topic = f"ofa_assets_{unique}"
    await create_topics(infra.kafka, [topic], partitions=4)
    f = Factory(6, 3, prefix=f"S{unique}")
    asset = f.assets[0]
    written = await simulate(
        f, infra.kafka, topic, rate=2000, count=300, move=(asset, "WC9"), move_at=0.0
    )
    got = await consume_all(infra.kafka, [topic], expect=written)
    assert len(got) == written == 6 * 6 + 6 + 300 + 1
    families = set()
    seqs: dict[str, list[int]] = {}
    groups: dict[str, str] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        ev = decode_record(r.key, r.value, r.headers)
        families.add("mtconnect" if ev.headers else "openfactory")
        seqs.setdefault(ev.asset_uuid, []).append(ev.attributes["seq"])
        if ev.id == "workcenter":
            groups[ev.asset_uuid] = str(ev.value)
    assert families == {"mtconnect", "openfactory"}
    # Per-asset sequence numbers are complete and in order within the asset's partition.
    for a, s in seqs.items():
        assert s == list(range(1, len(s) + 1)), a
    assert groups[asset] == "WC9"
    assert set(groups) == set(f.assets)


def test_simulate_cli_reports_a_summary(infra: Endpoints, unique: str) -> None:
    import asyncio

    topic = f"ofa_assets_cli_{unique}"
    asyncio.run(create_topics(infra.kafka, [topic], partitions=2))
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka, "INPUT_TOPIC": topic, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "compose.cli",
            "simulate",
            "--assets",
            "3",
            "--workcenters",
            "2",
            "--rate",
            "500",
            "--count",
            "50",
            "--no-helpers",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    summary = msgspec.json.decode(out.stdout.strip().splitlines()[-1])
    assert summary["records"] == 3 * 6 + 50
    assert sum(summary["last_seq"].values()) == summary["records"]
