"""Edge settings are validated declaratively: a bad value stops the process with exit status 2
and a message naming the variable (issue 10: ``EDGE_MAX_CONNECTIONS=-5`` was accepted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edge.settings import EdgeSettings
from ofa_contract.settings import SettingsError, from_env
from tests.support.procs import REPO


def test_negative_max_connections_exits_2_naming_the_variable() -> None:
    env = {**os.environ, "EDGE_MAX_CONNECTIONS": "-5", "NATS_URL": "nats://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "compose.cli", "edge"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "EDGE_MAX_CONNECTIONS='-5'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EDGE_MAX_CONNECTIONS", "0"),
        ("EDGE_PORT", "70000"),
        ("EDGE_CLIENT_QUEUE_BYTES", "0"),
        ("EDGE_MAX_HEADER_BYTES", "-1"),
        ("EDGE_HEARTBEAT_S", "0"),
        ("EDGE_PING_INTERVAL_S", "-2"),
        ("EDGE_RETRY_MS", "-1"),
        ("EDGE_MAX_NEW_CONNECTIONS_PER_S", "-1"),
        ("EDGE_HISTORY_TIMEOUT_S", "0"),
        ("EDGE_CLOSE_GRACE_S", "-1"),
        ("EDGE_GC_FREEZE", "maybe"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{var}='{value}'"):
        from_env(EdgeSettings, environ={var: value})


def test_limits_that_mean_off_are_accepted() -> None:
    s = from_env(
        EdgeSettings,
        environ={
            "EDGE_MAX_NEW_CONNECTIONS_PER_S": "0",
            "EDGE_CLOSE_GRACE_S": "0",
            "EDGE_PORT": "0",
        },
    )
    assert (s.max_new_connections_per_s, s.close_grace_s, s.port) == (0.0, 0.0, 0)
