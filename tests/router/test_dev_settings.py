"""Every router setting issue 11 adds reaches the router that ``ofa-serving dev`` starts (the
README shows these command lines), and ``dev --mode`` picks the router's mode."""

from __future__ import annotations

from pathlib import Path

from compose.dev import DevSettings, plan
from ofa_contract.layout import Layout
from ofa_contract.settings import CommonSettings, from_env
from router.settings import RouterSettings

USER_ENV = {
    "ROUTER_ASSET_ROUTER_PORT": "8002",
    "ROUTER_ASSET_NATS_URL": "nats://plant-nats.example:4222",
    "ROUTER_ASSET_CLUSTER_NAME": "PLANT",
    "ROUTER_CORS_ORIGINS": "http://localhost:3000,https://hmi.example",
    "ROUTER_PROXY_KEEPALIVE_S": "10",
}


def router_settings(settings: DevSettings, environ: dict[str, str]) -> RouterSettings:
    layout = Layout()
    stack = plan(settings, CommonSettings(), layout, "run", Path("/tmp"), environ=environ)
    (router,) = [c for c in stack.children if c.name == "router"]
    return from_env(RouterSettings, environ=router.env)


def test_dev_passes_the_router_settings_through() -> None:
    got = router_settings(DevSettings(), USER_ENV)
    assert got.asset_router_port == 8002
    assert got.asset_nats_url == "nats://plant-nats.example:4222"
    assert got.asset_cluster_name == "PLANT"
    assert got.cors_origins == ["http://localhost:3000", "https://hmi.example"]
    assert got.proxy_keepalive_s == 10.0
    assert got.mode == "proxy"


def test_dev_mode_option_sets_the_router_mode() -> None:
    assert router_settings(DevSettings(router_mode="redirect"), {}).mode == "redirect"
