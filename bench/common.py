"""Shared bits of the benchmarks: private local servers, medians, table printing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

from compose import local_infra


@contextlib.asynccontextmanager
async def servers() -> AsyncIterator[tuple[str, str]]:
    """(kafka bootstrap, nats url): the ones in the environment, or private ones started here."""
    kafka, nats_url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("NATS_URL")
    if kafka and nats_url:
        yield kafka, nats_url
        return
    with tempfile.TemporaryDirectory(prefix="ofa-bench-") as work:
        cfg = local_infra.private_config(work)
        state = await local_infra.up(cfg)
        try:
            yield state.kafka_bootstrap, state.nats_url
        finally:
            await asyncio.to_thread(local_infra.down, cfg)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def percentile(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cols = [list(map(str, c)) for c in zip(header, *rows, strict=False)]
    widths = [max(len(x) for x in c) for c in cols]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on uvloop when it is installed (as uvicorn runs the servers)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main)
