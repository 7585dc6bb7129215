"""`ofa-serving router` as a real process: settings from the environment (a bad value exits 2
naming the variable), both listeners, start-up while Kafka or NATS is unreachable (waits, says so
once naming the variable, not ready, stops at once on SIGTERM with status 0)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from compose.local_infra import NatsProcess, free_port
from tests.helpers import Endpoints
from tests.support.names import layout_for
from tests.support.procs import REPO, ComponentProcess
from tests.support.wait import wait_until


def router_process(tmp_path: Path, env: dict[str, str]) -> tuple[ComponentProcess, str]:
    port = free_port()
    env = {"ROUTER_PORT": str(port), "LOG_FORMAT": "json", **env}
    url = f"http://127.0.0.1:{port}"
    return ComponentProcess(["router"], env, tmp_path, name="router", ops_url=url), url


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ROUTER_PORT", "-5"), ("ROUTER_MODE", "sideways"), ("ROUTER_PROXY_KEEPALIVE_S", "-1")],
)
def test_bad_setting_exits_2_naming_the_variable(variable: str, value: str) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "compose.cli", "router"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2, bad.stderr
    assert variable in bad.stderr


async def test_router_process_serves_both_ports_and_stops(
    infra: Endpoints, nats_private: NatsProcess, unique: str, tmp_path: Path
) -> None:
    asset_port = free_port()
    proc, url = router_process(
        tmp_path,
        {
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
            "NATS_URL": nats_private.url,
            "OFA_NAMESPACE": layout_for(unique).namespace,
            "ROUTER_ASSET_ROUTER_PORT": str(asset_port),
            "ROUTER_ASSET_NATS_URL": "nats://public.example:4222",
        },
    )
    await proc.start(path="/health")  # not /ready: no edge is registered
    async with proc:
        assert await proc.status("/ready") == 503  # no edge registered
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{asset_port}") as c:
            r = await c.get("/asset/PROVER3018")
        assert r.json() == {
            "asset_id": "PROVER3018",
            "cluster_name": "C1",
            "nats_url": "nats://public.example:4222",
        }
        async with httpx.AsyncClient(base_url=url) as c:
            assert (await c.get("/asset/PROVER3018")).status_code == 200
        assert await proc.terminate() == 0


@pytest.mark.parametrize(
    ("variable", "unreachable"),
    [("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"), ("NATS_URL", "nats://127.0.0.1:1")],
)
async def test_start_while_a_dependency_is_unreachable(
    infra: Endpoints,
    nats_private: NatsProcess,
    tmp_path: Path,
    variable: str,
    unreachable: str,
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka, "NATS_URL": nats_private.url}
    env[variable] = unreachable
    proc, url = router_process(tmp_path, env)
    await proc.start(path="/health")
    async with proc:
        which = "kafka" if variable.startswith("KAFKA") else "nats"

        async def reported() -> bool:
            async with httpx.AsyncClient(base_url=url) as c:
                r = await c.get("/ready")
            return r.status_code == 503 and variable in r.json()["issues"].get(which, "")

        await wait_until(reported, timeout=30, what=f"/ready naming {variable}")
        assert await proc.terminate(timeout=10) == 0
    lines = [line for line in proc.log_text().splitlines() if "waiting for" in line]
    assert lines and variable in lines[0] and unreachable.split("//")[-1] in lines[0]
    # One line, then only at growing intervals (attempts 1, 2, 4, 8...): few in any case.
    assert len(lines) <= 5, lines
    assert "Traceback" not in proc.log_text()
