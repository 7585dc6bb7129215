"""Pure parts of the splitter's at_least_once mode (no broker)."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from splitter.delivery import cached_partitioner, changelog_mark, consumer_options
from splitter.settings import SplitterSettings


def test_cached_partitioner_agrees_with_aiokafkas_default() -> None:
    rng = random.Random(3)
    default = DefaultPartitioner()
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(1, 40))
        parts = list(range(rng.randrange(1, 12)))
        assert cached_partitioner(key, parts, parts) == default(key, parts, parts)
        assert cached_partitioner(key, parts, parts) == default(key, parts, parts)  # cached
    assert cached_partitioner(None, [0, 1, 2], [1]) == 1


def test_changelog_mark_parses_only_its_own_format() -> None:
    assert changelog_mark("ofa-cl1;42") == 42
    assert changelog_mark("ofa-cl1;0") == 0
    for other in (None, "", "ofa-cl1;", "ofa-cl1;x", "ofa-cl1;-3", "something"):
        assert changelog_mark(other) is None


def test_fetch_batching_only_in_at_least_once() -> None:
    assert consumer_options(SplitterSettings()) == {}
    alo = SplitterSettings(delivery="at_least_once", fetch_batch_ms=15)
    assert consumer_options(alo)["fetch_max_wait_ms"] == 15
    assert consumer_options(SplitterSettings(delivery="at_least_once", fetch_batch_ms=0)) == {}
