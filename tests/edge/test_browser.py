"""A headless Chromium EventSource page receives events and, after the edge restarts, resumes
(the browser reconnects on its own with Last-Event-ID) without loss or duplicates."""

from __future__ import annotations

import asyncio
import time

from playwright.async_api import async_playwright

from tests.edge.procs import EdgeProcess
from tests.edge.publisher import Publisher
from tests.helpers import CHROMIUM_ARGS
from tests.support.wait import wait_until

PAGE_JS = """(url) => {
  window.got = []; window.opens = 0;
  const es = new EventSource(url);
  es.onopen = () => { window.opens += 1; };
  es.addEventListener('asset_update', (e) => {
    window.got.push({id: e.lastEventId, value: JSON.parse(e.data).VALUE});
  });
}"""


async def wait_for(page, expr: str, timeout: float = 20.0):
    return await wait_until(lambda: page.evaluate(expr), timeout=timeout, what=expr)


async def test_browser_eventsource_receives_and_resumes(nats_private, tmp_path) -> None:
    pub = await Publisher.connect(nats_private.url)
    edge = EdgeProcess(nats_private.url, tmp_path, EDGE_RETRY_MS="300")
    await edge.start()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                await page.goto(edge.url + "/health")  # same origin as the stream
                await page.evaluate(PAGE_JS, "/asset_stream?asset_uuid=BROWSER-1")
                await wait_for(page, "window.opens >= 1")
                # `opens` fires on headers; the subscription is confirmed with `retry:` right
                # after, so give it a first event to be sure before counting.
                sent = []
                deadline = time.monotonic() + 10
                while not await page.evaluate("window.got.length"):
                    sent.append(await pub.publish("BROWSER-1", "v", len(sent)))
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
                # A fresh connect is live only: events before its subscription are not expected.
                first_id = int(await page.evaluate("window.got[0].id"))
                sent = [s for s in sent if s >= first_id]
                sent += [await pub.publish("BROWSER-1", "v", 100 + i) for i in range(5)]
                await wait_for(page, f"window.got.length >= {len(sent)}")
                # Restart the edge: the page is told to reconnect, events published while
                # no edge runs come from the stream history when EventSource comes back.
                assert await edge.terminate() == 0
                sent += [await pub.publish("BROWSER-1", "v", 200 + i) for i in range(5)]
                edge = EdgeProcess(nats_private.url, tmp_path, port=edge.port, EDGE_RETRY_MS="300")
                await edge.start()
                sent += [await pub.publish("BROWSER-1", "v", 300 + i) for i in range(3)]
                await wait_for(page, f"window.got.length >= {len(sent)}", timeout=30)
                got = await page.evaluate("window.got")
                assert [int(g["id"]) for g in got] == sent
                assert await page.evaluate("window.opens") >= 2
            finally:
                await browser.close()
    finally:
        await edge.stop()
        await pub.close()
