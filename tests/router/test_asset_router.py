"""OpenFactory's asset router endpoint, ``GET /asset/{asset_uuid}``, on the router's port and on
the second listener (``ROUTER_ASSET_ROUTER_PORT``), answered as OpenFactory's asset router does."""

from __future__ import annotations

import socket

import msgspec

from compose.local_infra import free_port
from ofa_contract.settings import CommonSettings
from router.asset_router import public_nats_url
from router.settings import RouterSettings
from tests.router.harness import Stack, client


async def test_asset_route_on_both_ports(stack: Stack) -> None:
    second = free_port()
    await stack.start_router(
        asset_router_port=second,
        asset_nats_url="nats://nats.plant.example:4222",
        asset_cluster_name="PLANT",
    )
    for base in (stack.url, f"http://127.0.0.1:{second}"):
        async with client(base) as c:
            # Registered or not, every uuid gets an answer (OpenFactory hashes any uuid).
            for sent, echoed in [
                ("PROVER3018", "PROVER3018"),
                ("never-seen-asset", "never-seen-asset"),
                ("Halle%20S%C3%BCd", "Halle Süd"),
            ]:
                r = await c.get(f"/asset/{sent}")
                assert r.status_code == 200, r.text
                # Byte order of the keys as OpenFactory's FastAPI answer has them.
                assert list(msgspec.json.decode(r.content)) == [
                    "asset_id",
                    "cluster_name",
                    "nats_url",
                ]
                assert r.json() == {
                    "asset_id": echoed,
                    "cluster_name": "PLANT",
                    "nats_url": "nats://nats.plant.example:4222",
                }
            r = await c.get("/asset/")
            assert r.status_code == 404 and "detail" in r.json()
            assert (await c.get("/asset/" + "A" * 1024)).status_code == 200
            r = await c.get("/asset/" + "A" * 1025)
            assert r.status_code == 400 and "detail" in r.json()
    # The second listener is the asset router only.
    async with client(f"http://127.0.0.1:{second}") as c:
        assert (await c.get("/health")).json() == {"status": "ok"}
        assert (await c.get("/asset_stream", params={"asset_uuid": "X"})).status_code == 404
    async with client(stack.url) as c:
        metrics = (await c.get("/metrics")).text
    # Both listeners count into one registry: 4 answers x 2 ports.
    assert 'ofa_router_requests_total{route="/asset/{asset_uuid}",status="200"} 8.0' in metrics


async def test_asset_route_defaults(stack: Stack) -> None:
    """No second listener by default; nats_url is NATS_URL; cluster C1 (OpenFactory's name)."""
    await stack.start_router()
    assert len(stack.servers) == 1
    async with client(stack.url) as c:
        r = await c.get("/asset/PROVER3018")
    assert r.json() == {"asset_id": "PROVER3018", "cluster_name": "C1", "nats_url": stack.nats_url}


def test_public_nats_url_is_the_first_server() -> None:
    common = CommonSettings(nats_url="nats://n1:4222, nats://n2:4222")
    assert public_nats_url(RouterSettings(), common) == "nats://n1:4222"
    public = RouterSettings(asset_nats_url="nats://public:4222")
    assert public_nats_url(public, common) == "nats://public:4222"


async def test_busy_asset_router_port_stops_the_router(stack: Stack) -> None:
    """A second port that cannot be bound ends the router with status 1, main listener too."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack.port = 0
        try:
            await stack.start_router(asset_router_port=port)
        except AssertionError as exc:
            assert "exited during start-up with 1" in str(exc)
        else:
            raise AssertionError("the router started although its second port was taken")
