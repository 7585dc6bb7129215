"""The dashboard in headless Chromium: values change live and survive an edge restart."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import msgspec
from playwright.async_api import Page, async_playwright

from compose.local_infra import NatsProcess
from ofa_contract.layout import NatsHeaders
from tests.edge.conftest import running_edge
from tests.edge.publisher import Publisher
from tests.helpers import CHROMIUM_ARGS, Endpoints
from tests.router.harness import Stack

ASSETS = {"DASH-1": "WC1", "DASH-2": "WC2"}
_ids = itertools.count()


async def publish(pub: Publisher, asset: str, item: str, value: Any, seq: int) -> None:
    """Publish one record the way the bridge does (stream subject, Nats-Msg-Id, KV latest)."""
    rec = {
        "ID": item,
        "VALUE": value,
        "TAG": "Tag",
        "TYPE": "Samples" if item != "workcenter" else "OpenFactory",
        "attributes": {"timestamp": "2025-01-01T00:00:00.000Z", "seq": seq},
    }
    data = msgspec.json.encode(rec)
    await pub.js.publish(
        pub.layout.stream_subject(asset, item),
        data,
        headers={NatsHeaders.MSG_ID: f"t_dash:0:{next(_ids)}"},
    )
    kv = await pub.js.key_value(pub.layout.state_bucket)
    await kv.put(pub.layout.state_key(asset, item), data)


async def stats(page: Page) -> dict[str, Any]:
    return dict(
        await page.evaluate(
            """() => Object.fromEntries([...window.dashboard.assets.values()].map(s => [s.uuid,
            {events: s.events, resumes: s.resumes, gaps: s.gaps, dups: s.dups, status: s.status,
             lastId: s.lastId}]))"""
        )
    )


async def wait_stats(page: Page, cond: Any, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await stats(page)
        if st and cond(st):
            return st
        assert time.monotonic() < deadline, f"dashboard never showed {what}: {st}"
        await asyncio.sleep(0.2)


async def test_dashboard_live_and_edge_restart(
    infra: Endpoints, nats_private: NatsProcess, unique: str
) -> None:
    stack = Stack(infra.kafka, nats_private.url, unique)
    await stack.setup_data(buckets=False)
    pub = await Publisher.connect(nats_private.url)
    seqs = dict.fromkeys(ASSETS, 0)
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            for asset in ASSETS:
                seqs[asset] += 1
                await publish(pub, asset, "Temp", round(20 + seqs[asset] * 0.1, 2), seqs[asset])
            await asyncio.sleep(0.05)

    edges = contextlib.AsyncExitStack()
    task: asyncio.Task[None] | None = None
    try:
        await edges.enter_async_context(running_edge(nats_private.url, retry_ms=300))
        for asset, wc in ASSETS.items():
            await stack.set_group(asset, wc)
            seqs[asset] += 1
            await publish(pub, asset, "workcenter", wc, seqs[asset])
        await stack.start_router(mode="proxy")
        for asset, wc in ASSETS.items():
            await stack.wait_group(asset, wc)
        await stack.wait_edges(1)
        task = asyncio.create_task(writer())
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                await page.goto(stack.url + "/")
                await page.wait_for_function("window.dashboard && window.dashboard.ready")
                # Workcenter sections come from asset_state.
                headings = await page.locator("h2").all_inner_texts()
                assert headings == ["WC1 (1)", "WC2 (1)"]
                before = await wait_stats(
                    page,
                    lambda s: all(v["events"] >= 10 and v["status"] == "open" for v in s.values()),
                    20,
                    "live events",
                )
                cell = page.locator('[data-asset="DASH-1"] tr[data-item="Temp"] td.v')
                v1 = await cell.inner_text()
                await page.wait_for_function(
                    """(v) => document.querySelector(
                         '[data-asset="DASH-1"] tr[data-item="Temp"] td.v').textContent !== v""",
                    arg=v1,
                    timeout=10000,
                )
                # Restart the edge: stop it (clients are told to reconnect), start a new one.
                await edges.aclose()
                await edges.enter_async_context(running_edge(nats_private.url, retry_ms=300))
                after = await wait_stats(
                    page,
                    lambda s: all(
                        v["resumes"] >= 1
                        and v["status"] == "open"
                        and v["events"] >= before[k]["events"] + 20
                        for k, v in s.items()
                    ),
                    30,
                    "resume after the edge restart",
                )
                for v in after.values():
                    assert v["gaps"] == 0 and v["dups"] == 0
                flash = await page.locator('[data-asset="DASH-1"] [data-role="flash"]').inner_text()
                assert flash.startswith("resumed after id")
            finally:
                await browser.close()
    finally:
        stop.set()
        if task is not None:
            await task
        await edges.aclose()
        await stack.stop()
        await pub.close()
