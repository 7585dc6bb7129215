"""The contract's test vectors, vendored in ``tests/data`` (a clone has no ``../shared``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

DATA = Path(__file__).resolve().parents[1] / "data"
#: The contract samples (good and ``BAD ...`` records) of ``ofa_assets``.
SAMPLES = DATA / "ofa_assets.samples.jsonl"
#: Records captured from a real OpenFactory deployment.
REAL_SAMPLES = DATA / "openfactory-real.samples.jsonl"


def load_samples(path: Path = SAMPLES) -> list[dict[str, Any]]:
    """The samples of ``path``, one dict per line."""
    return [msgspec.json.decode(line) for line in path.read_text().splitlines() if line.strip()]


def sample_record(s: dict[str, Any]) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Turn one samples-file line into a raw Kafka (key, value, headers) record."""
    if "key_hex" in s:
        key: bytes | None = bytes.fromhex(s["key_hex"].replace(" ", ""))
    else:
        key = s["key"].encode() if s.get("key") is not None else None
    if "value_raw" in s:
        value: bytes | None = s["value_raw"].encode()
    elif s.get("value") is None and "2 MiB" in s["note"]:
        value = msgspec.json.encode({"ID": "big", "VALUE": "x" * 2097152, "TYPE": "Samples"})
    else:
        value = msgspec.json.encode(s["value"])
    headers = [(k, v.encode()) for k, v in s.get("headers", {}).items()]
    return key, value, headers


def item_event(item: str, seq: int) -> bytes:
    """A minimal ``Samples`` event of data item ``item`` whose value (and ``seq`` attribute) is
    ``seq``, so a test can tell records apart by value."""
    return msgspec.json.encode(
        {"ID": item, "VALUE": seq, "TYPE": "Samples", "attributes": {"seq": seq}}
    )
