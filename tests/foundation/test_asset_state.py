"""One asset_state shaping for /asset_state and snapshot=true, read from a real KV bucket."""

from __future__ import annotations

import msgspec
import nats
import pytest

from compose import local_infra
from ofa_contract.asset_state import (
    NO_TIMESTAMP,
    AssetStateReader,
    as_text,
    open_reader,
    snapshot_json,
)
from ofa_contract.layout import Layout


def test_values_are_rendered_as_json_text_never_python_str() -> None:
    assert as_text(True) == "true"
    assert as_text(False) == "false"
    assert as_text(21.5) == "21.5"
    assert as_text(7) == "7"
    assert as_text("AVAILABLE") == "AVAILABLE"
    assert as_text(None) is None


def _record(item: str, value: object, ts: str | None = "2026-12-02T10:00:00Z") -> bytes:
    doc: dict[str, object] = {"ID": item, "VALUE": value, "TYPE": "Samples", "TAG": "x"}
    if ts is not None:
        doc["attributes"] = {"timestamp": ts}
    return msgspec.json.encode(doc)


@pytest.fixture
async def reader(nats_private: local_infra.NatsProcess) -> AssetStateReader:
    nc = await nats.connect(nats_private.url)
    js = nc.jetstream()
    assert await open_reader(js, "state_t") is None  # no bucket yet: nothing known
    kv = await js.create_key_value(bucket="state_t")
    await kv.put(Layout.state_key("A1", "avail"), _record("avail", True))
    await kv.put(Layout.state_key("A1", "Temp"), _record("Temp", 20.5, ts=None))
    await kv.put(Layout.state_key("A1", "junk"), b"not json")
    await kv.put(Layout.state_key("A2", "Temp"), _record("Temp", "1"))
    opened = await open_reader(js, "state_t", watch_timeout=5.0)
    assert opened is not None
    yield opened
    await nc.close()


async def test_one_item(reader: AssetStateReader) -> None:
    one = await reader.item("A1", "avail")
    assert one is not None
    assert (one.asset_uuid, one.id, one.value, one.timestamp) == (
        "A1",
        "avail",
        "true",
        "2026-12-02T10:00:00Z",
    )
    no_ts = await reader.item("A1", "Temp")
    assert no_ts is not None and no_ts.timestamp == NO_TIMESTAMP and no_ts.value == "20.5"
    assert await reader.item("A1", "nope") is None  # the router answers 404
    assert await reader.item("A1", "junk") is None  # undecodable: skipped


async def test_whole_asset_sorted_known_items_only(reader: AssetStateReader) -> None:
    state = await reader.asset("A1")
    assert state is not None
    assert [(d.id, d.value) for d in state.dataItems] == [("Temp", "20.5"), ("avail", "true")]
    assert await reader.asset("NOPE") is None


async def test_snapshot_uses_the_same_shapes_and_omits_the_unknown(
    reader: AssetStateReader,
) -> None:
    whole = await snapshot_json(reader, "A1", None)
    assert whole is not None
    doc = msgspec.json.decode(whole)
    assert doc["asset_uuid"] == "A1"
    assert [d["value"] for d in doc["dataItems"]] == ["20.5", "true"]
    one = await snapshot_json(reader, "A1", "avail")
    assert one is not None and msgspec.json.decode(one)["value"] == "true"
    assert await snapshot_json(reader, "A1", "nope") is None
    empty = await snapshot_json(reader, "NOPE", None)
    assert empty is not None and msgspec.json.decode(empty)["dataItems"] == []
    assert msgspec.json.decode(await snapshot_json(None, "A1", None) or b"")["dataItems"] == []
