"""/asset_state shapes, /groups, /ready truthfulness, auth, and the `ofa-serving router` process."""

from __future__ import annotations

import time

import jwt

from compose.local_infra import NatsProcess
from ofa_contract.auth import AuthSettings
from tests.helpers import Endpoints
from tests.router.fake_edge import FakeEdge
from tests.router.harness import Stack, client
from tests.support.samples import load_samples
from tests.support.wait import wait_until


async def put_samples(stack: Stack) -> None:
    for s in load_samples():
        if (
            "value" in s
            and isinstance(s["value"], dict)
            and s.get("key")
            and "BAD" not in s["note"]
        ):
            await stack.put_state(s["key"], s["value"])


async def test_asset_state_shapes(stack: Stack) -> None:
    await put_samples(stack)
    await stack.start_router()
    async with client(stack.url) as c:
        r = await c.get(
            "/asset_state", params={"asset_uuid": "VIRTUAL-TEMP-SENS-001", "id": "Temp"}
        )
        assert r.status_code == 200
        assert r.json() == {
            "asset_uuid": "VIRTUAL-TEMP-SENS-001",
            "id": "Temp",
            "value": "101.32",
            "type": "Samples",
            "tag": "{urn:mtconnect.org:MTConnectStreams:2.2}Temperature",
            "timestamp": "2025-09-05T19:14:31.702938Z",
        }
        assert list(r.json()) == ["asset_uuid", "id", "value", "type", "tag", "timestamp"]
        # Numeric VALUE is served as text, a null condition value as null.
        r = await c.get("/asset_state", params={"asset_uuid": "PROVER3018"})
        assert r.status_code == 200
        assert r.json() == {
            "asset_uuid": "PROVER3018",
            "dataItems": [
                {
                    "id": "Zact",
                    "value": "-0.328",
                    "type": "Samples",
                    "tag": "Position",
                    "timestamp": "2025-07-10T19:31:51.004Z",
                },
                {
                    "id": "system",
                    "value": None,
                    "type": "Condition",
                    "tag": "{urn:mtconnect.org:MTConnectStreams:2.2}Normal",
                    "timestamp": "2025-07-10T19:31:50.2Z",
                },
            ],
        }
        r = await c.get("/asset_state", params={"asset_uuid": "VIRTUAL-TEMP-SENS-001"})
        ids = [d["id"] for d in r.json()["dataItems"]]
        assert ids == sorted(["workcenter", "AssetType", "uns_id", "Temp", "avail"])
        # Names illegal in NATS tokens are encoded in the key and still found.
        r = await c.get("/asset_state", params={"asset_uuid": "LINE 3.ROBOT*1", "id": "axis.x>pos"})
        assert r.status_code == 200
        assert r.json()["value"] == "12.5"
        # An asset whose uuid is a prefix of another's is not mixed with it.
        r = await c.get("/asset_state", params={"asset_uuid": "VIRTUAL-TEMP-SENS-001-AGENT"})
        assert [d["id"] for d in r.json()["dataItems"]] == ["avail"]
        r = await c.get("/asset_state", params={"asset_uuid": "PROVER3018", "id": "nope"})
        assert (r.status_code, r.json()) == (
            404,
            {"detail": "No data found for the given asset_uuid and id."},
        )
        r = await c.get("/asset_state", params={"asset_uuid": "NOPE"})
        assert (r.status_code, r.json()) == (
            404,
            {"detail": "No data found for the given asset_uuid."},
        )
        r = await c.get("/asset_state")
        assert r.status_code == 400
        assert "asset_uuid" in r.json()["detail"]
        # No attributes.timestamp: "UNAVAILABLE", as OpenFactory's COALESCE renders it; a
        # boolean VALUE is JSON text ("true"), as on the edge's snapshot.
        await stack.put_state("NO-TS", {"ID": "avail", "VALUE": True, "TYPE": "Events"})
        r = await c.get("/asset_state", params={"asset_uuid": "NO-TS", "id": "avail"})
        assert r.json() == {
            "asset_uuid": "NO-TS",
            "id": "avail",
            "value": "true",
            "type": "Events",
            "tag": None,
            "timestamp": "UNAVAILABLE",
        }
        r = await c.get("/asset_state", params={"asset_uuid": "NO-TS"})
        assert r.json()["dataItems"][0]["timestamp"] == "UNAVAILABLE"


async def test_groups_endpoint(stack: Stack, edge: FakeEdge) -> None:
    await stack.set_group("A1", "WC1")
    await stack.set_group("A2", "WC1")
    await stack.set_group("P7", "Paint Shop.2")
    await stack.announce("WC1", "asset_stream_WC1", 6)
    await stack.register_edge("e-all", edge.url)
    await stack.register_edge("e-paint", edge.url, groups=["Paint Shop.2"])
    await stack.kv_bridges.put(
        "b1", b'{"id": "b1", "groups": ["WC1"], "updated_ms": %d}' % int(time.time() * 1000)
    )
    await stack.start_router()
    await stack.wait_group("P7", "Paint Shop.2")
    await stack.wait_edges(2)
    svc = stack.service
    assert svc is not None

    async def bridge_seen() -> bool:
        return bool(svc.bridges.live())

    await wait_until(bridge_seen, timeout=10, what="bridge registry")

    async def announced() -> bool:
        return "WC1" in svc.index.groups()

    await wait_until(announced, timeout=10, what="group announcement")
    async with client(stack.url) as c:
        body = (await c.get("/groups")).json()
    by_name = {g["group"]: g for g in body["groups"]}
    assert by_name["WC1"] == {
        "group": "WC1",
        "topic": "asset_stream_WC1",
        "partitions": 6,
        "announced": True,
        "assets": 2,
        "bridge": ["b1"],
        "edges": ["e-all"],
    }
    assert by_name["Paint Shop.2"]["topic"] == stack.layout.group_topic_prefix + "Paint_20Shop_2E2"
    assert by_name["Paint Shop.2"]["edges"] == ["e-all", "e-paint"]
    assert by_name["Paint Shop.2"]["bridge"] == []


async def test_ready_tells_the_truth(
    infra: Endpoints, nats_private: NatsProcess, unique: str, edge: FakeEdge
) -> None:
    stack = Stack(infra.kafka, nats_private.url, unique)
    await stack.setup_data(topics=False, buckets=False)
    try:
        await stack.start_router(ready_timeout_s=2.0)
        async with client(stack.url) as c:
            r = await c.get("/ready")
            assert r.status_code == 503
            issues = r.json()["issues"]
            assert r.json()["status"] == "not ready"
            assert "not found" in issues["group_index"]
            assert "asset_state" in issues["kv_asset_state"]
            assert "kv_ofa_edges" in issues and "edges" in issues
            assert "kafka" not in issues and "nats" not in issues
            await stack.create_topics()
            await stack.create_buckets()

            async def only_edges_missing() -> bool:
                r = await c.get("/ready")
                return set(r.json().get("issues", {})) == {"edges"}

            await wait_until(only_edges_missing, timeout=20, what="only the edge issue left")
            await stack.register_edge("e1", edge.url)

            async def ready() -> bool:
                r = await c.get("/ready")
                return r.status_code == 200 and r.json() == {"status": "ready"}

            await wait_until(ready, timeout=15, what="ready")
            assert (await c.get("/health")).json() == {"status": "ok"}
            nats_private.stop()

            async def nats_issue() -> bool:
                r = await c.get("/ready")
                return r.status_code == 503 and "nats" in r.json()["issues"]

            await wait_until(nats_issue, timeout=15, what="nats issue reported")
            info = (await c.get("/info")).json()
            assert info["version"] and info["mode"] == "proxy"  # the default
            metrics = (await c.get("/metrics")).text
            assert 'ofa_router_requests_total{route="/ready",status="503"}' in metrics
            schema = await c.get("/schema/openapi.json")
            assert schema.status_code == 200
            assert "/asset_stream" in schema.json()["paths"]
    finally:
        await stack.stop()


async def test_auth(stack: Stack, edge: FakeEdge) -> None:
    key = "s3cret-key-for-tests-0123456789abcdef"
    await stack.set_group("A1", "WC1")
    await stack.set_group("B1", "WC2")
    await stack.register_edge("e1", edge.url)
    await stack.put_state("A1", {"ID": "Temp", "VALUE": "1", "TYPE": "Samples", "TAG": "T"})
    await stack.start_router(mode="redirect", auth=AuthSettings(secret=key))
    await stack.wait_group("B1", "WC2")
    await stack.wait_edges(1)
    wc1 = jwt.encode({"groups": ["WC1"]}, key, algorithm="HS256")
    b_only = jwt.encode({"assets": ["B*"]}, key, algorithm="HS256")
    async with client(stack.url) as c:
        r = await c.get("/asset_stream", params={"asset_uuid": "A1"})
        assert r.status_code == 401 and "detail" in r.json()
        r = await c.get("/asset_stream", params={"asset_uuid": "A1", "token": "garbage"})
        assert r.status_code == 401 and r.json()["detail"].startswith("invalid token")
        r = await c.get(
            "/asset_stream",
            params={"asset_uuid": "A1"},
            headers={"Authorization": f"Bearer {b_only}"},
        )
        assert r.status_code == 403 and "A1" in r.json()["detail"]
        # A header token is passed on in the redirect, which cannot carry headers.
        r = await c.get(
            "/asset_stream", params={"asset_uuid": "A1"}, headers={"Authorization": f"Bearer {wc1}"}
        )
        assert r.status_code == 307
        assert f"token={wc1}" in r.headers["location"]
        r = await c.get("/asset_stream", params={"asset_uuid": "B1", "token": b_only})
        assert r.status_code == 307 and r.headers["location"].count("token=") == 1
        c.cookies.set("ofa_token", wc1)
        r = await c.get("/asset_state", params={"asset_uuid": "A1", "id": "Temp"})
        assert r.status_code == 200 and r.json()["value"] == "1"
        c.cookies.clear()
        r = await c.get(
            "/asset_state",
            params={"asset_uuid": "A1", "id": "Temp"},
            headers={"Authorization": f"Bearer {b_only}"},
        )
        assert r.status_code == 403


async def test_kv_bucket_config_untouched(stack: Stack) -> None:
    """The router only binds buckets; it never creates or changes them (owners do)."""
    cfg_before = (await stack.js.stream_info("KV_ofa_edges")).config.max_age
    await stack.start_router()
    async with client(stack.url) as c:
        await c.get("/ready")
    cfg_after = (await stack.js.stream_info("KV_ofa_edges")).config.max_age
    assert cfg_before == cfg_after
