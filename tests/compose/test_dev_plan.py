"""`ofa-serving dev` without the whole stack: what it passes to its children, what it overrides,
the up-front port check, the quiet ready polls, and bad DEV_* values."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from compose import dev
from compose.local_infra import free_port
from ofa_contract.layout import Layout
from ofa_contract.runtime import OpsServer, setup_logging
from ofa_contract.settings import CommonSettings

REPO = Path(__file__).resolve().parents[2]
COMMON = CommonSettings(kafka_bootstrap_servers="k:9092", nats_url="nats://n:4222")


def _plan(env: dict[str, str], settings: dev.DevSettings | None = None) -> dev.Plan:
    s = settings or dev.DevSettings(edge_ports=[7001, 7002], bridge_ops_ports=[7011])
    layout = Layout.from_env(env).namespaced(s.namespace)
    return dev.plan(s, COMMON, layout, "run1", Path("/tmp/logs"), environ=env)


def _env_of(p: dev.Plan, name: str) -> dict[str, str]:
    return next(c.env for c in p.children if c.name == name)


def test_user_settings_pass_through() -> None:
    env = {
        "SPLIT_GROUPING": "attribute",
        "ROUTER_CORS_ORIGINS": "https://a.example",
        "EDGE_MAX_CONNECTIONS": "50",
        "BRIDGE_WINDOW": "64",
        "STREAM_NAME": "MINE",
        "LOG_FORMAT": "text",
        "DEV_ASSETS": "3",
    }
    p = _plan(env)
    for name in ("splitter", "bridge-1", "edge-1", "router", "simulator"):
        child = _env_of(p, name)
        assert child["SPLIT_GROUPING"] == "attribute", name
        assert child["ROUTER_CORS_ORIGINS"] == "https://a.example", name
        assert child["EDGE_MAX_CONNECTIONS"] == "50", name
        assert child["BRIDGE_WINDOW"] == "64", name
        assert child["LOG_FORMAT"] == "text", name
        assert child["STREAM_NAME"] == "MINE", name
        assert child["EDGE_STREAM"] == "MINE", name  # old name, for processes not yet migrated
        assert "DEV_ASSETS" not in child, name
    assert p.overridden == {}


def test_only_ports_ids_and_servers_are_overridden_and_reported() -> None:
    env = {"EDGE_PORT": "9000", "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092", "EDGE_ID": "x"}
    p = _plan(env)
    assert [_env_of(p, f"edge-{i}")["EDGE_PORT"] for i in (1, 2)] == ["7001", "7002"]
    assert _env_of(p, "edge-2")["EDGE_ID"] == "dev-edge-2"
    assert _env_of(p, "router")["KAFKA_BOOTSTRAP_SERVERS"] == "k:9092"
    assert set(p.overridden) == {"EDGE_PORT", "EDGE_ID", "KAFKA_BOOTSTRAP_SERVERS"}
    assert p.overridden["KAFKA_BOOTSTRAP_SERVERS"] == ("elsewhere:9092", "k:9092")
    text = dev.banner(dev.DevSettings(), COMMON, Layout(), p, Path("/tmp/logs"))
    assert "EDGE_PORT: yours '9000'" in text and "KAFKA_BOOTSTRAP_SERVERS" in text


def test_namespace_prefixes_every_name_and_consumer_group() -> None:
    settings = dev.DevSettings(namespace="d1_", edge_ports=[7001], bridge_ops_ports=[7011])
    p = _plan({"SPLIT_GROUP_ID": "mine", "OFA_NAMESPACE": "x_"}, settings)
    split = _env_of(p, "splitter")
    assert split["INPUT_TOPIC"] == "d1_x_ofa_assets"
    assert split["GROUP_TOPIC_PREFIX"] == split["SPLIT_TOPIC_PREFIX"] == "d1_x_asset_stream_"
    assert split["SPLIT_GROUP_ID"] == "d1_mine"
    assert split["SPLIT_TRANSACTIONAL_ID_PREFIX"] == "d1_ofa-splitter"
    assert "OFA_NAMESPACE" not in split  # already applied to every name
    assert _env_of(p, "bridge-1")["BRIDGE_CONSUMER_GROUP"] == "d1_ofa-bridge"
    assert _env_of(p, "edge-1")["STATE_BUCKET"] == "d1_x_asset_state"
    assert _env_of(p, "router")["ROUTER_CHANGELOG_TOPIC"] == "d1_x_ofa_splitter_assets"


def _run_dev(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LOG_FORMAT": "text"}
    return subprocess.run(
        [sys.executable, "-m", "compose.cli", "dev"],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_busy_edge_port_is_named_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _run_dev(
            {
                # Unreachable servers: the port check must come first, so nothing is contacted.
                "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                "NATS_URL": "nats://127.0.0.1:1",
                "DEV_EDGE_PORTS": f"{free_port()},{port}",
                "DEV_ROUTER_PORT": str(free_port()),
                "DEV_BRIDGE_OPS_PORTS": str(free_port()),
                "DEV_SPLITTER_OPS_PORT": str(free_port()),
            }
        )
    assert out.returncode == 1, out.stderr
    assert f"port {port} (edge-2) is taken by another process; set DEV_EDGE_PORTS" in out.stderr
    assert "exited with status" not in out.stdout + out.stderr


def test_a_bad_dev_setting_exits_2_naming_the_variable() -> None:
    out = _run_dev({"DEV_ROUTER_PORT": "-1"})
    assert out.returncode == 2
    assert "DEV_ROUTER_PORT='-1'" in out.stderr


async def test_ready_polls_log_no_access_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("INFO", "text")
    answers = iter([{"x": "starting"}] * 3)

    async def ready() -> dict[str, str]:
        return next(answers, {})

    server = OpsServer("127.0.0.1", 0, ready)
    await server.start()
    try:
        child = dev.Child("edge-1", [], {}, f"http://127.0.0.1:{server.port}/ready", Path("x"))
        await asyncio.wait_for(dev.wait_ready([child], 30), 40)
    finally:
        await server.stop()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    out = capsys.readouterr()
    assert "ready  edge-1" in out.out
    assert "HTTP Request" not in out.err + out.out
    assert "503" not in out.err + out.out


def test_environment_reference_covers_every_process_and_the_shared_names() -> None:
    from compose import envdoc

    text = envdoc.render()
    for var in ("DEV_ROUTER_PORT", "DEV_NAMESPACE", "SIM_RATE", "STREAM_NAME", "OFA_NAMESPACE"):
        assert f"`{var}`" in text, var
    assert "| `EDGE_STREAM` | `STREAM_NAME` |" in text  # deprecated names listed
    assert text.count("| `INPUT_TOPIC` |") == 1  # read by two Structs, documented once
