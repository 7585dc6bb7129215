"""Regression (issue 10): an edge started while NATS is unreachable blocked its start-up inside
``nats.connect`` and ignored SIGTERM/SIGINT for as long as NATS stayed away, logging a warning
every 0.5 s. Now it listens anyway, says once what it waits for, reports not-ready, stops at once
on a signal, and connects when NATS comes."""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import nats
import pytest

from compose import local_infra
from tests.edge.procs import EdgeProcess
from tests.support.wait import wait_until

WAITING = "waiting for NATS at {url} (NATS_URL)"


async def _ready_issues(
    e: EdgeProcess, predicate: Callable[[dict[str, str]], bool], what: str
) -> dict[str, str]:
    """Poll /ready until ``predicate(issues)`` holds; the issues then."""

    async def issues() -> dict[str, str] | None:
        async with httpx.AsyncClient(timeout=5) as c:
            body = (await c.get(e.url + "/ready")).json()
        found: dict[str, str] = body.get("issues", {})
        return found if predicate(found) else None

    got = await wait_until(issues, timeout=30, what=what)
    assert got is not None
    return got


def _attempts(issues: dict[str, str]) -> int:
    """Failed connection attempts /ready reports ("... (7 attempts)"), 0 when none."""
    found = re.search(r"\((\d+) attempts\)", issues.get("nats", ""))
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_unreachable_nats_not_ready_and_prompt_stop(
    tmp_path: Path, sig: signal.Signals
) -> None:
    url = "nats://127.0.0.1:1"
    e = EdgeProcess(url, tmp_path)
    await e.start(path="/health")
    try:
        # Several connection attempts have failed (0.5 s, 1 s, 2 s... apart) ...
        issues = await _ready_issues(e, lambda i: _attempts(i) >= 4, "4 failed attempts on /ready")
        assert WAITING.format(url=url) in issues["nats"]
        t0 = time.monotonic()
        e.send_signal(sig)
        assert await e.wait_exit(10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        await e.stop()
    # ... but the log said what it waits for once, then only at growing intervals.
    lines = e.log_text().splitlines()
    waiting = [line for line in lines if f"edge.node: {WAITING.format(url=url)}" in line]
    assert waiting, lines
    stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in waiting]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(b >= 1.5 * a for a, b in itertools.pairwise(gaps)), gaps
    # No line per failed attempt besides those (the connection's own errors are not logged).
    refused = [line for line in lines if "ConnectionRefusedError" in line]
    assert refused == waiting, lines


async def test_connects_when_nats_comes_later(tmp_path: Path) -> None:
    cfg = local_infra.private_config(tmp_path)
    server = local_infra.NatsProcess(cfg)
    e = EdgeProcess(server.url, tmp_path)
    await e.start(path="/health")
    try:
        issues = await _ready_issues(e, lambda i: "nats" in i, "nats on /ready")
        assert WAITING.format(url=server.url) in issues["nats"]
        server.start()
        await server.wait_ready()
        # Connected and registered: what is missing now is the stream (nobody created it).
        await _ready_issues(e, lambda i: list(i) == ["stream"], "only the stream missing")
        nc = await nats.connect(server.url)
        try:
            kv = await nc.jetstream().key_value("ofa_edges")
            assert (await kv.get(f"edge-{e.port}")).value  # registered
        finally:
            await nc.close()
        assert await e.terminate() == 0
    finally:
        await e.stop()
        server.stop()
