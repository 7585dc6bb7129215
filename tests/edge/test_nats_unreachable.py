"""Regression (issue 10): an edge started while NATS is unreachable blocked its start-up inside
``nats.connect`` and ignored SIGTERM/SIGINT for as long as NATS stayed away, logging a warning
every 0.5 s. Now it listens anyway, says once what it waits for, reports not-ready, stops at once
on a signal, and connects when NATS comes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats
import pytest

from compose import local_infra
from tests.edge.procs import EdgeProcess

WAITING = "waiting for NATS at {url} (NATS_URL)"


def _ready(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_ready_issue(e: EdgeProcess, predicate: object, timeout: float = 30) -> dict[str, str]:
    """Poll /ready until ``predicate(issues)`` holds; the issues then."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = _ready(e.url)
        issues = body.get("issues", {})
        assert isinstance(issues, dict)
        if predicate(issues):  # type: ignore[operator]
            return issues
        assert time.monotonic() < deadline, f"/ready stayed {status} {body}"
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_unreachable_nats_not_ready_and_prompt_stop(tmp_path: Path, sig: signal.Signals) -> None:
    url = "nats://127.0.0.1:1"
    e = EdgeProcess(url, tmp_path).start()
    try:
        # Several reconnect attempts have failed (nats-py retries every 0.5 s) ...
        issues = _wait_ready_issue(
            e, lambda i: "nats" in i and "(4 attempts)" in i["nats"], timeout=20
        )
        assert WAITING.format(url=url) in issues["nats"]
        t0 = time.monotonic()
        assert e.proc is not None
        e.proc.send_signal(sig)
        rc = e.proc.wait(10)
        assert rc == 0 and time.monotonic() - t0 < 5
    finally:
        e.stop()
    log = e.log_path.read_text()
    # ... but the log said it once (the next line is due after 5 s at the earliest).
    assert log.count(WAITING.format(url=url)) == 1, log
    assert "NATS error" not in log


async def test_connects_when_nats_comes_later(tmp_path: Path) -> None:
    cfg = local_infra.private_config(tmp_path)
    server = local_infra.NatsProcess(cfg)
    e = EdgeProcess(server.url, tmp_path).start()
    try:
        issues = await asyncio.to_thread(_wait_ready_issue, e, lambda i: "nats" in i)
        assert WAITING.format(url=server.url) in issues["nats"]
        server.start()
        await server.wait_ready()
        # Connected: what is missing now is the stream (nobody created it), not NATS.
        issues = await asyncio.to_thread(
            _wait_ready_issue, e, lambda i: "nats" not in i and "stream" in i
        )
        nc = await nats.connect(server.url)
        try:
            kv = await nc.jetstream().key_value("ofa_edges")
            assert (await kv.get(f"edge-{e.port}")).value  # registered
        finally:
            await nc.close()
        assert await asyncio.to_thread(e.terminate) == 0
    finally:
        e.stop()
        server.stop()
