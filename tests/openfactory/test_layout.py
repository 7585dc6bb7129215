"""OpenFactory's NATS layout (pure): subjects, payloads and the guards, on real records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ofa_contract import openfactory as of

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "openfactory-real.samples.jsonl"
NOW = 1_764_670_000_123  # 2025-12-02T10:06:40.123Z


def real_samples() -> list[dict[str, Any]]:
    """The records OpenFactory's own writers produce (tests/data, vendored from the contract)."""
    return [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]


def test_iso_ms_matches_openfactory_format() -> None:
    assert of.iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert of.iso_ms(NOW) == "2025-12-02T10:06:40.123Z"
    assert of.iso_ms(1_769_528_223_882) == "2026-01-27T15:37:03.882Z"


def test_payload_of_an_openfactory_record_byte_for_byte() -> None:
    value = b'{"ID": "Temp", "VALUE": 24.3, "TAG": "Temperature", "TYPE": "Samples", "attributes": {"timestamp": "2026-01-27T15:37:03.871Z"}}'  # noqa: E501
    msg = of.to_openfactory("opcua-sensor-001", value, 1_769_528_223_882, 0, NOW)
    assert msg.subject == "OPCUA-SENSOR-001.Temp"
    assert msg.payload == (
        b'{"VALUE": 24.3, "TAG": "Temperature", "TYPE": "Samples", "attributes": '
        b'{"timestamp": "2026-01-27T15:37:03.871Z", '
        b'"asset_forwarder_timestamp": "2025-12-02T10:06:40.123Z", '
        b'"kafka_timestamp": "2026-01-27T15:37:03.882Z", "kafka_timestamp_type": "producer"}}'
    )


def test_payload_without_attributes_log_append_time_and_lower_case_id() -> None:
    msg = of.to_openfactory("A", b'{"value":"\xc3\xa9","id":"x","type":"Events"}', 5, 1, NOW)
    assert msg.subject == "A.x"
    # json.dumps defaults, as OpenFactory's forwarder: ", " / ": " separators, ASCII escapes,
    # `attributes` appended at the end when the record had none.
    assert msg.payload == (
        b'{"value": "\\u00e9", "type": "Events", "attributes": {"asset_forwarder_timestamp": '
        b'"2025-12-02T10:06:40.123Z", "kafka_timestamp": "1970-01-01T00:00:00.005Z", '
        b'"kafka_timestamp_type": "broker"}}'
    )


def test_no_kafka_timestamp_leaves_both_keys_out() -> None:
    _, body = of.payload(b'{"ID":"x","VALUE":1}', -1, 0, NOW)
    assert json.loads(body)["attributes"] == {"asset_forwarder_timestamp": of.iso_ms(NOW)}
    _, body = of.payload(b'{"ID":"x","VALUE":1}', 7, 5, NOW)
    assert json.loads(body)["attributes"]["kafka_timestamp_type"] == "unknown"


def test_only_the_first_id_key_is_removed() -> None:
    item, body = of.payload(b'{"Id":"first","ID":"second","VALUE":1}', 0, 0, NOW)
    assert item == "first"
    assert json.loads(body)["ID"] == "second"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[1]", "not_object"),
        (b"nope", "not_json"),
        (b'{"VALUE":1}', "no_id"),
        (b'{"ID":"","VALUE":1}', "no_id"),
        (b'{"ID":5,"VALUE":1}', "no_id"),
        (b'{"ID":"x","attributes":null}', "attributes_not_object"),
    ],
)
def test_payload_guards(value: bytes, reason: str) -> None:
    with pytest.raises(of.Skipped) as info:
        of.payload(value, 0, 0, NOW)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("key", "item", "expected"),
    [
        ("prover3018", "avail", "PROVER3018.avail"),  # SDK subscribes to the upper-cased uuid
        ("PROVER3018", "Temp", "PROVER3018.Temp"),  # the id keeps its case
        ("ZAIX-4-003", "a.b", "ZAIX-4-003.a.b"),  # a dot: one more token, as in OpenFactory
        ("SITE.A", "x", "SITE.A.x"),
        ("A", "a*b", "A.a*b"),  # not a wildcard token: a literal for NATS
        ("A", "a>", "A.a>"),
        ("VIRTUAL-TEMP-SENS-001", "température", "VIRTUAL-TEMP-SENS-001.température"),
    ],
)
def test_subjects_published(key: str, item: str, expected: str) -> None:
    assert of.subject(key, item) == expected


@pytest.mark.parametrize(
    ("key", "item", "reason"),
    [
        ("A", "has space", "whitespace"),
        ("A B", "x", "whitespace"),
        ("A", "tab\there", "whitespace"),
        ("A", "line\r\nPUB x 1", "whitespace"),
        ("A", "nul\x00", "whitespace"),
        ("A", "*", "wildcard"),
        ("A", ">", "wildcard"),
        ("A", "x.*", "wildcard"),
        ("*", "x", "wildcard"),
        ("A", "x.", "empty_token"),
        ("A", ".x", "empty_token"),
        ("A..B", "x", "empty_token"),
        ("A", "x" * of.MAX_SUBJECT_BYTES, "too_long"),
        ("$JS.API.STREAM.DELETE", "OFA_ASSETS", "reserved"),
        ("$kv", "x", "reserved"),
        ("_inbox", "x", "reserved"),
    ],
)
def test_subjects_skipped(key: str, item: str, reason: str) -> None:
    with pytest.raises(of.Skipped) as info:
        of.subject(key, item)
    assert info.value.reason == reason


def test_configured_prefixes_are_reserved() -> None:
    # An asset key that would land in the serving layer's own stream or live subjects.
    with pytest.raises(of.Skipped) as info:
        of.subject("ofa.asset.x", "y", ("OFA.ASSET", "asset"))
    assert info.value.reason == "reserved"
    assert of.subject("ofa.assets", "y", ("OFA.ASSET",)) == "OFA.ASSETS.y"


@pytest.mark.parametrize("sample", real_samples(), ids=lambda s: f"{s['key']}:{s['note']}")
def test_real_records_keep_everything_but_the_id(sample: dict[str, Any]) -> None:
    """Every record OpenFactory's writers produce: only the protocol's changes, nothing else."""
    value = sample["value"].encode()
    msg = of.to_openfactory(sample["key"], value, 1_700_000_000_000, 0, NOW)
    original = json.loads(value)
    id_key = next(k for k in original if k.lower() == "id")
    assert msg.subject == f"{sample['key'].upper()}.{original[id_key]}"
    got = json.loads(msg.payload)
    added = {
        "asset_forwarder_timestamp": of.iso_ms(NOW),
        "kafka_timestamp": "2023-11-14T22:13:20.000Z",
        "kafka_timestamp_type": "producer",
    }
    expected = {k: v for k, v in original.items() if k != id_key}
    expected["attributes"] = {**original.get("attributes", {}), **added}
    assert got == expected
    assert list(got) == list(expected)  # key order kept
    # What the SDK reads, case-insensitively: TYPE, VALUE, TAG and attributes.timestamp.
    lower = {k.lower(): v for k, v in got.items()}
    assert lower["value"] == {k.lower(): v for k, v in original.items()}["value"]
    assert lower["attributes"]["timestamp"] == original["attributes"]["timestamp"]
