"""/asset_stream: redirect, proxy framing, errors, and the group index following the changelog."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx

from compose.local_infra import free_port
from tests.router.fake_edge import CHUNKS, FakeEdge
from tests.router.harness import Stack, client
from tests.sse import SseParser


async def read_events(
    resp: httpx.Response, n: int, timeout: float = 10.0
) -> tuple[SseParser, list]:
    parser = SseParser()
    events: list = []

    async def run() -> None:
        async for chunk in resp.aiter_raw():
            events.extend(parser.feed(chunk))
            if len(events) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return parser, events


async def test_redirect_then_sse(stack: Stack, edge: FakeEdge) -> None:
    await stack.register_edge("e1", edge.url)
    await stack.start_for("PAINT-ROBOT-7", "Paint Shop.2", mode="redirect")
    async with client(stack.url) as c:
        r = await c.get(
            "/asset_stream", params={"asset_uuid": "PAINT-ROBOT-7", "id": "Temp", "x": "1"}
        )
        assert r.status_code == 307
        loc = urlsplit(r.headers["location"])
        assert f"{loc.scheme}://{loc.netloc}" == edge.url
        # The group travels encoded (ofa_contract.naming.encode_token); the edge decodes it.
        assert loc.path == "/group/Paint_20Shop_2E2/asset_stream"
        assert parse_qs(loc.query) == {"asset_uuid": ["PAINT-ROBOT-7"], "id": ["Temp"], "x": ["1"]}
    # A real SSE client following the redirect gets the edge's events.
    async with (
        httpx.AsyncClient(follow_redirects=True, timeout=10) as c,
        c.stream("GET", f"{stack.url}/asset_stream?asset_uuid=PAINT-ROBOT-7") as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        parser, events = await read_events(resp, 3)
    assert [(e.id, e.event) for e in events] == [
        ("41", "asset_update"),
        ("42", "asset_update"),
        ("43", "asset_update"),
    ]
    assert events[1].data == '{"id":"avail","value":"AVAILABLE"}'
    assert parser.retry == 1000
    assert edge.seen[-1].path == "/group/Paint_20Shop_2E2/asset_stream"


async def test_proxy_bytes_unchanged_and_last_event_id(stack: Stack, edge: FakeEdge) -> None:
    # A dead edge that looks emptier is tried first; the router must fall through to the live one.
    await stack.register_edge("dead", f"http://127.0.0.1:{free_port()}", connections=0)
    await stack.register_edge("e1", edge.url, connections=5)
    await stack.start_for("A1", "WC1", edges=2, mode="proxy")
    expected = b"".join(CHUNKS)
    async with (
        httpx.AsyncClient(timeout=10) as c,
        c.stream(
            "GET",
            f"{stack.url}/asset_stream?asset_uuid=A1&id=avail",
            headers={"Last-Event-ID": "40"},
        ) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-accel-buffering"] == "no"
        assert resp.headers["cache-control"] == "no-store"
        got = b""

        async def collect() -> None:
            nonlocal got
            async for chunk in resp.aiter_raw():
                got += chunk
                if len(got) >= len(expected):
                    return

        await asyncio.wait_for(collect(), 10)
    assert got == expected
    seen = edge.seen[-1]
    assert seen.headers["last-event-id"] == "40"
    assert seen.path == "/group/WC1/asset_stream"
    assert seen.query == {"asset_uuid": ["A1"], "id": ["avail"]}
    assert stack.service is not None
    assert stack.service.metrics.edge_failures._value.get() >= 1


async def test_proxy_passes_edge_errors(stack: Stack, edge: FakeEdge) -> None:
    edge.status = 503
    await stack.register_edge("e1", edge.url)
    await stack.start_for("A1", "WC1", mode="proxy")
    async with client(stack.url) as c:
        r = await c.get("/asset_stream", params={"asset_uuid": "A1"})
    assert r.status_code == 503
    assert r.json() == {"detail": "edge says no"}
    assert r.headers["retry-after"] == "7"


async def test_stream_errors(stack: Stack, edge: FakeEdge) -> None:
    await stack.register_edge("e1", edge.url, groups=["WC1"])
    await stack.start_for("A-WC2", "WC2")
    async with client(stack.url) as c:
        r = await c.get("/asset_stream")
        assert r.status_code == 400
        assert "asset_uuid" in r.json()["detail"]
        r = await c.get("/asset_stream", params={"asset_uuid": "NOPE"})
        assert r.status_code == 404
        assert r.json() == {"detail": "Asset group not found"}
        # WC2 is known but the only edge serves WC1 only.
        r = await c.get("/asset_stream", params={"asset_uuid": "A-WC2"})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "2"
        assert "WC2" in r.json()["detail"]
        r = await c.get("/no/such/route")
        assert r.status_code == 404
        assert "detail" in r.json()


async def test_group_index_follows_moves(stack: Stack, edge: FakeEdge) -> None:
    await stack.register_edge("e1", edge.url)
    await stack.start_for("MOVER", "WC1", mode="redirect")
    async with client(stack.url) as c:
        r = await c.get("/asset_stream", params={"asset_uuid": "MOVER"})
        assert urlsplit(r.headers["location"]).path == "/group/WC1/asset_stream"
        await stack.set_group("MOVER", "WC3")
        await stack.wait_group("MOVER", "WC3")
        r = await c.get("/asset_stream", params={"asset_uuid": "MOVER"})
        assert urlsplit(r.headers["location"]).path == "/group/WC3/asset_stream"
        # A tombstone removes the asset from the table.
        await stack.set_group("MOVER", None)
        await stack.wait_group("MOVER", None)
        r = await c.get("/asset_stream", params={"asset_uuid": "MOVER"})
        assert r.status_code == 404


async def test_fewest_connections_wins(stack: Stack, edge: FakeEdge) -> None:
    other = FakeEdge()
    await other.start()
    try:
        await stack.register_edge("busy", edge.url, connections=10)
        await stack.register_edge("idle", other.url, connections=0)
        await stack.start_for("A1", "WC1", edges=2, mode="redirect", redirect_base="")
        async with client(stack.url) as c:
            targets = []
            for _ in range(14):
                r = await c.get("/asset_stream", params={"asset_uuid": "A1"})
                targets.append(r.headers["location"].split("/group/")[0])
        # The idle edge takes the first ten; then the local estimate balances them.
        assert targets[:10] == [other.url] * 10
        assert set(targets[10:]) == {other.url, edge.url}
    finally:
        await other.stop()


async def test_default_settings_stream_for_httpx_and_curl(stack: Stack, edge: FakeEdge) -> None:
    """The documented call works as documented: with default settings (proxy mode) an httpx
    client with its defaults (no redirects followed, 5 s read timeout) and ``curl`` without
    ``-L`` get the events on the connection they opened."""
    await stack.register_edge("e1", edge.url)
    await stack.start_for("PROVER3018", "WC1")
    url = f"{stack.url}/asset_stream?asset_uuid=PROVER3018"
    async with httpx.AsyncClient() as c, c.stream("GET", url) as resp:
        assert resp.status_code == 200
        _, events = await read_events(resp, 3)
    assert [e.id for e in events] == ["41", "42", "43"]
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sN", "--max-time", "30", url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert curl.stdout is not None
        parser = SseParser()
        got: list = []
        while len(got) < 3:
            chunk = await asyncio.wait_for(curl.stdout.read(4096), 15)
            assert chunk, "curl's stream ended before three events"
            got.extend(parser.feed(chunk))
        assert [e.id for e in got[:3]] == ["41", "42", "43"]
    finally:
        curl.kill()
        await curl.wait()


async def test_proxy_keepalive_only_between_events(stack: Stack) -> None:
    """A quiet edge gets ``: keepalive`` comments sent for it, never inside an event; a client
    whose read timeout is shorter than the edge's ping interval stays connected."""
    half = b'id: 7\nevent: asset_update\ndata: {"ID":"T",'
    rest = b'"VALUE":"1"}\n\n'
    edge = FakeEdge(chunks=[b"retry: 1000\n\n", half, rest], pauses={1: 0.8})
    await edge.start()
    try:
        await stack.register_edge("e1", edge.url)
        await stack.start_for("A1", "WC1", proxy_keepalive_s=0.3)
        timeout = httpx.Timeout(5.0, read=1.0)
        async with (
            httpx.AsyncClient(timeout=timeout) as c,
            c.stream("GET", f"{stack.url}/asset_stream?asset_uuid=A1") as resp,
        ):
            got = b""

            async def collect() -> None:
                nonlocal got
                async for chunk in resp.aiter_raw():
                    got += chunk
                    # Six keepalives: the edge was silent well past the read timeout.
                    if got.count(b": keepalive") >= 6 and got.endswith(b"\n\n"):
                        return

            await asyncio.wait_for(collect(), 15)
    finally:
        await edge.stop()
    head = b"retry: 1000\n\n" + half + rest
    # No keepalive while the event was half sent, although the edge paused there for longer
    # than the keepalive interval.
    assert got.replace(b": keepalive\n\n", b"").startswith(head)
    assert half + rest in got
    parser = SseParser()
    events = parser.feed(got)
    assert [(e.id, e.data) for e in events] == [("7", '{"ID":"T","VALUE":"1"}')]
