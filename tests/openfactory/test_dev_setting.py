"""`BRIDGE_OPENFACTORY_SUBJECTS` works in `ofa-serving dev` as in a bridge run alone: dev passes
it to every bridge worker it starts, and the worker reads it."""

from __future__ import annotations

from pathlib import Path

from bridge.settings import BridgeSettings
from compose import dev
from ofa_contract.layout import Layout
from ofa_contract.settings import CommonSettings, from_env


def _bridge_settings(env: dict[str, str]) -> list[BridgeSettings]:
    s = dev.DevSettings(edge_ports=[7001], bridge_ops_ports=[7011, 7012])
    common = CommonSettings(kafka_bootstrap_servers="k:9092", nats_url="nats://n:4222")
    plan = dev.plan(s, common, Layout(), "run1", Path("/tmp/logs"), environ=env)
    bridges = [c for c in plan.children if c.name.startswith("bridge-")]
    assert len(bridges) == 2
    return [from_env(BridgeSettings, environ=c.env) for c in bridges]


def test_dev_passes_the_setting_to_every_bridge() -> None:
    assert all(b.openfactory_subjects for b in _bridge_settings({}))  # on by default
    off = _bridge_settings({"BRIDGE_OPENFACTORY_SUBJECTS": "false"})
    assert [b.openfactory_subjects for b in off] == [False, False]
