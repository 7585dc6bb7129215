"""`ofa-serving dev`: every component becomes ready, an SSE event arrives through the router, and
SIGTERM stops everything, leaving no process behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright

from compose.local_infra import NatsProcess, free_port
from tests.helpers import CHROMIUM_ARGS, Endpoints
from tests.sse import SseParser

STATS_JS = """() => [...window.dashboard.assets.values()].filter(s => s.wanted).map(s =>
    ({uuid: s.uuid, events: s.events, resumes: s.resumes, gaps: s.gaps, dups: s.dups,
      status: s.status}))"""


async def poll_page(page: Page, cond: Any, timeout: float, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        st = await page.evaluate(STATS_JS)
        if st and cond(st):
            return list(st)
        assert time.monotonic() < deadline, f"dashboard never showed {what}: {st}"
        await asyncio.sleep(0.25)


async def dashboard_survives_edge_restarts(base: str, banner: str) -> None:
    """Chromium on the dashboard: live values change; both edges are killed (-9) and restarted
    by `dev`; every followed asset resumes with no gap and no duplicate in its sequence."""
    pids = dict(re.findall(r"(edge-\d)=(\d+)", banner))
    assert set(pids) == {"edge-1", "edge-2"}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/?live=3")
            await page.wait_for_function("window.dashboard && window.dashboard.ready")
            assert len(await page.locator("h2").all_inner_texts()) == 3  # workcenters
            before = await poll_page(
                page, lambda s: len(s) == 3 and all(a["events"] >= 3 for a in s), 30, "events"
            )
            # Order holds on a fresh stream too (a new edge feed once reordered it).
            for a in before:
                assert a["gaps"] == 0 and a["dups"] == 0, ("before the edges were killed", a)
            for pid in pids.values():
                os.kill(int(pid), signal.SIGKILL)
            counts = {a["uuid"]: a["events"] for a in before}
            after = await poll_page(
                page,
                lambda s: all(
                    a["resumes"] >= 1
                    and a["status"] == "open"
                    and a["events"] > counts[a["uuid"]] + 3
                    for a in s
                ),
                60,
                "resume after the edges were killed",
            )
            for a in after:
                assert a["gaps"] == 0 and a["dups"] == 0, a
        finally:
            await browser.close()


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment contains ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in env and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(d.name))
    return found


async def test_dev_starts_serves_and_stops_cleanly(
    infra: Endpoints, nats_private: NatsProcess, unique: str, tmp_path: Path
) -> None:
    router_port = free_port()
    marker = f"OFA_DEV_TEST={unique}"
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka,
        NATS_URL=nats_private.url,
        INPUT_TOPIC=f"t_dev_in_{unique}",
        DEV_NAMESPACE=f"t_dev_{unique}_",
        DEV_ROUTER_PORT=str(router_port),
        DEV_EDGE_PORTS=f"{free_port()},{free_port()}",
        DEV_BRIDGE_OPS_PORTS=f"{free_port()},{free_port()}",
        DEV_SPLITTER_OPS_PORT=str(free_port()),
        DEV_ASSETS="6",
        DEV_RATE="30",
        DEV_LOG_DIR=str(tmp_path / "logs"),
        DEV_READY_TIMEOUT_S="150",
        OFA_DEV_TEST=unique,
    )
    out = tmp_path / "dev.out"
    with open(out, "wb") as f:  # noqa: ASYNC230 - a local file, opened once
        proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [sys.executable, "-m", "compose.cli", "dev"],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 170
        while b"ofa-serving dev is up" not in out.read_bytes():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            await asyncio.sleep(0.5)
        banner = out.read_text()
        assert f"http://127.0.0.1:{router_port}/" in banner
        assert len(processes_with(marker)) >= 8  # dev + splitter + 2 bridges + 2 edges + ...
        base = f"http://127.0.0.1:{router_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            assert (await c.get("/ready")).json() == {"status": "ready"}
            # The simulator's assets reach the router's group index via the splitter.
            # The index fills as the splitter announces each asset: wait for all three
            # workcenters of the simulator (6 assets over 3), not only for the first asset.
            asset, body = "", {"workcenters": {}}
            while not asset or len(body["workcenters"]) < 3:
                body = (await c.get("/api/assets")).json()
                names = sorted(a for wc in body["workcenters"].values() for a in wc)
                asset = next((a for a in names if not a.endswith("-AGENT")), "")
                assert time.monotonic() < deadline + 30, body
                await asyncio.sleep(0.5)
            assert len(body["workcenters"]) == 3
            parser = SseParser()
            events = []
            async with c.stream("GET", f"/asset_stream?asset_uuid={asset}") as resp:
                assert resp.status_code == 200

                async def first() -> None:
                    async for chunk in resp.aiter_raw():
                        events.extend(e for e in parser.feed(chunk) if e.event == "asset_update")
                        if events:
                            return

                await asyncio.wait_for(first(), 30)
            assert events[0].id and int(events[0].id) > 0
            r = await c.get("/asset_state", params={"asset_uuid": asset})
            assert r.status_code == 200 and r.json()["dataItems"]
        await dashboard_survives_edge_restarts(base, banner)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 60)
        assert rc == 0, out.read_text()[-3000:]
        assert "stopped" in out.read_text()
        left = processes_with(marker)
        assert left == [], f"processes left behind: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
