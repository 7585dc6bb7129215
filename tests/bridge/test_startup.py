"""`ofa-serving bridge` start-up policy: with Kafka or NATS unreachable it waits with back-off,
says once which variable points at what it waits for, reports not-ready, and stops at once
(exit 0) on SIGTERM; a bad setting exits 2 naming the variable."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from compose.local_infra import NatsProcess, free_port
from tests.bridge.support import bridge_layout, bridge_settings, env_for
from tests.helpers import Endpoints
from tests.support.procs import ComponentProcess
from tests.support.wait import wait_until


@pytest.mark.parametrize(
    ("unreachable", "variable", "line"),
    [
        ("kafka", "KAFKA_BOOTSTRAP_SERVERS", "waiting for Kafka at 127.0.0.1:1"),
        ("nats", "NATS_URL", "waiting for NATS at nats://127.0.0.1:1"),
    ],
)
async def test_waits_for_an_unreachable_service_and_stops_on_sigterm(
    infra: Endpoints,
    nats_private: NatsProcess,
    unique: str,
    tmp_path: Path,
    unreachable: str,
    variable: str,
    line: str,
) -> None:
    port = free_port()
    s = bridge_settings(unique, ops_port=port)
    env = env_for(s, bridge_layout(unique), infra.kafka, nats_private.url)
    env[variable] = "127.0.0.1:1" if unreachable == "kafka" else "nats://127.0.0.1:1"
    proc = ComponentProcess(
        ["bridge"], env, tmp_path, name=f"bridge-{unreachable}", ops_url=f"http://127.0.0.1:{port}"
    )
    proc.start_nowait()  # not awaited ready: it must not become ready
    async with proc:  # stopped whatever happens

        async def says_what_it_waits_for() -> bool:
            return line in proc.log_text() and f"({variable})" in proc.log_text()

        await wait_until(says_what_it_waits_for, timeout=60, what=f"a line naming {variable}")
        assert await wait_until(lambda: proc.status("/ready"), timeout=10) == 503
        assert proc.returncode is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await proc.wait_exit(timeout=15)
        took = time.monotonic() - t0
    assert code == 0, proc.log_tail()
    assert took < 10, f"took {took:.1f}s to stop"
    # Back-off: a handful of lines at most, not one per attempt.
    assert proc.log_text().count(line) <= 4, proc.log_tail()
    assert "Traceback" not in proc.log_text(), proc.log_tail()


async def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path, unique: str) -> None:
    env = {"BRIDGE_MAX_IN_FLIGHT": "0", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    proc = ComponentProcess(["bridge"], env, tmp_path, name="bridge-bad")
    proc.start_nowait()
    assert await proc.wait_exit(timeout=30) == 2
    assert "BRIDGE_MAX_IN_FLIGHT" in proc.log_text(), proc.log_text()
