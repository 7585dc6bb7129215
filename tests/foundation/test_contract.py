"""The contract's test vectors decode (or fail) exactly as specified."""

from __future__ import annotations

import msgspec
import pytest

from ofa_contract import events
from ofa_contract.events import AssetEvent, BadRecord, decode_record
from tests.helpers import load_samples, sample_record

SAMPLES = load_samples()
GOOD = [s for s in SAMPLES if not s["note"].startswith("BAD")]
BAD = [s for s in SAMPLES if s["note"].startswith("BAD")]

BAD_KIND = {
    "BAD: not JSON": events.NotJson,
    "BAD: JSON but not an object": events.NotAnObject,
    "BAD: object without an id key": events.NoId,
    "BAD: no key": events.NoKey,
    "BAD: key not valid UTF-8": events.KeyNotUtf8,
    "BAD: 2 MiB": events.TooLarge,
}


def _expected_kind(note: str) -> type[BadRecord]:
    for prefix, kind in BAD_KIND.items():
        if note.startswith(prefix):
            return kind
    raise AssertionError(f"samples file has a bad kind this test does not know: {note}")


def test_samples_cover_both_families_and_every_bad_kind() -> None:
    assert len(GOOD) >= 10
    assert {_expected_kind(s["note"]) for s in BAD} == set(BAD_KIND.values())


@pytest.mark.parametrize("sample", GOOD, ids=[s["note"] for s in GOOD])
def test_good_sample_decodes_to_expected_fields(sample: dict) -> None:
    key, value, headers = sample_record(sample)
    ev = decode_record(key, value, headers)
    v = sample["value"]
    lower = {k.lower(): val for k, val in v.items()}
    assert isinstance(ev, AssetEvent)
    assert ev.asset_uuid == sample["key"]
    assert ev.id == lower["id"]
    assert ev.value == lower.get("value")
    assert ev.type == lower.get("type")
    assert ev.tag == lower.get("tag")
    assert ev.timestamp == v.get("attributes", {}).get("timestamp")
    assert ev.raw == value, "the original bytes must be kept untouched"
    assert dict(ev.headers) == {k: val.encode() for k, val in sample["headers"].items()}


@pytest.mark.parametrize("sample", BAD, ids=[s["note"] for s in BAD])
def test_bad_sample_raises_its_typed_error(sample: dict) -> None:
    key, value, headers = sample_record(sample)
    kind = _expected_kind(sample["note"])
    with pytest.raises(kind) as info:
        decode_record(key, value, headers)
    assert info.value.kind == kind.kind
    assert str(info.value), "the error must say what is wrong"


def test_value_bytes_are_kept_byte_for_byte_even_with_odd_spacing() -> None:
    raw = b'{ "ID" : "x",\n "VALUE":1.50,"attributes":{"timestamp":"UNAVAILABLE"} }'
    ev = decode_record(b"A", raw)
    assert ev.raw == raw
    assert ev.value == 1.5
    assert ev.timestamp == "UNAVAILABLE"


def test_missing_attributes_and_null_value_are_accepted() -> None:
    ev = decode_record(b"A", b'{"id": "cond", "value": null}')
    assert ev.attributes == {}
    assert ev.value is None
    assert ev.timestamp is None


def test_mixed_case_keys_are_matched_case_insensitively() -> None:
    ev = decode_record(b"A", b'{"Id": "x", "Value": "7", "Type": "Events", "Tag": "T"}')
    assert (ev.id, ev.value, ev.type, ev.tag) == ("x", "7", "Events", "T")


def test_size_limit_is_configurable_and_named_in_error() -> None:
    value = msgspec.json.encode({"ID": "x", "VALUE": "y" * 100})
    with pytest.raises(events.TooLarge, match="limit is 50 bytes"):
        decode_record(b"A", value, max_bytes=50)
    assert decode_record(b"A", value, max_bytes=1000).id == "x"


@pytest.mark.parametrize(
    ("key", "value", "kind"),
    [
        (b"", b'{"ID":"x"}', events.NoKey),
        (b"A", None, events.NotJson),
        (b"A", b'"just a string"', events.NotAnObject),
        (b"A", b'{"ID": ""}', events.NoId),
        (b"A", b'{"ID": 5}', events.NoId),
        (b"A", b"\xff\xfe", events.NotJson),
    ],
)
def test_edge_cases_raise_typed_errors(key: bytes, value: bytes | None, kind: type) -> None:
    with pytest.raises(kind):
        decode_record(key, value)
