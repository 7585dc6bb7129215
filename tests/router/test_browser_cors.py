"""CORS: a dashboard page served from another origin opens
``new EventSource("http://<router>/asset_stream?asset_uuid=X")`` in headless Chromium and gets the
events, through the real edge, in proxy mode and in redirect mode; a page from an origin that is
not allowed gets none."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from compose.local_infra import NatsProcess
from tests.helpers import CHROMIUM_ARGS, Endpoints
from tests.router.harness import real_edge_stack

PAGE = b"<!doctype html><title>plant dashboard</title><p>dashboard</p>"

OPEN_JS = """(url) => {
  window.got = []; window.errors = 0;
  const es = new EventSource(url);
  es.addEventListener('asset_update', (e) => {
    window.got.push({id: e.lastEventId, value: JSON.parse(e.data).VALUE});
  });
  es.onerror = () => { window.errors += 1; };
}"""


@contextlib.asynccontextmanager
async def page_server() -> AsyncIterator[str]:
    """A plain HTTP server for the dashboard page: an origin of its own (another port)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(PAGE), PAGE)
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def wait_for(page: Page, expr: str, timeout: float = 20.0) -> Any:
    """Poll a JavaScript expression in the page until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (val := await page.evaluate(expr)):
        assert time.monotonic() < deadline, f"browser never satisfied {expr}"
        await asyncio.sleep(0.1)
    return val


@pytest.mark.parametrize("mode", ["proxy", "redirect"])
async def test_eventsource_from_another_origin(
    infra: Endpoints, nats_private: NatsProcess, unique: str, mode: str
) -> None:
    async with page_server() as dashboard, page_server() as stranger:
        # After a cross-origin redirect the browser sends `Origin: null` to the edge (the Fetch
        # standard's "tainted origin"), so in redirect mode the edge must allow that origin.
        edge = {"cors_origins": [dashboard] if mode == "proxy" else ["null"]}
        stack_cm = real_edge_stack(
            infra.kafka,
            nats_private.url,
            unique,
            "CORS-1",
            "Halle Süd/2",
            edge,
            mode=mode,
            cors_origins=[dashboard],
        )
        async with stack_cm as (stack, pub), async_playwright() as p:
            sent = [await pub.publish("CORS-1", "Temp", i) for i in range(3)]
            url = f"{stack.url}/asset_stream?asset_uuid=CORS-1&last_event_id=0"
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            try:
                allowed = await browser.new_page()
                await allowed.goto(dashboard + "/")
                await allowed.evaluate(OPEN_JS, url)
                await wait_for(allowed, f"window.got.length >= {len(sent)}")
                got = await allowed.evaluate("window.got")
                assert [int(g["id"]) for g in got] == sent
                assert [g["value"] for g in got] == [0, 1, 2]
                assert await allowed.evaluate("window.errors") == 0
                # The control: the same request from an origin not allowed is blocked.
                other = await browser.new_page()
                console: list[str] = []
                other.on("console", lambda m: console.append(m.text))
                await other.goto(stranger + "/")
                await other.evaluate(OPEN_JS, url)
                await wait_for(other, "window.errors >= 1")
                assert any("blocked by CORS policy" in m for m in console), console
                assert await other.evaluate("window.got.length") == 0
            finally:
                await browser.close()
