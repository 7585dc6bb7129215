"""Settings from environment variables: typed, validated, with errors naming the variable."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest

from compose.local_infra import InfraConfig
from ofa_contract.settings import CommonSettings, SettingsError, describe, from_env


class Example(msgspec.Struct, kw_only=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8080
    enabled: bool = False
    names: list[str] = msgspec.field(default_factory=list)
    ratio: float = 0.5


def test_defaults_without_environment() -> None:
    assert from_env(Example, "X_", {}) == Example()
    common = from_env(CommonSettings, "", {})
    assert common.input_topic == "ofa_assets"


def test_values_are_converted() -> None:
    env = {"X_PORT": "9000", "X_ENABLED": "true", "X_NAMES": "a, b,c", "X_RATIO": "0.25"}
    assert from_env(Example, "X_", env) == Example(
        port=9000, enabled=True, names=["a", "b", "c"], ratio=0.25
    )
    assert from_env(Example, "X_", {"X_NAMES": '["x y"]'}).names == ["x y"]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"X_PORT": "eighty"}, "X_PORT='eighty'"),
        ({"X_PORT": "70000"}, "X_PORT='70000'"),
        ({"X_RATIO": "half"}, "X_RATIO"),
        ({"X_NAMES": "[1,"}, "not valid JSON"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle.replace("[", r"\[")):
        from_env(Example, "X_", env)


def test_infra_ports_come_from_environment() -> None:
    cfg = from_env(InfraConfig, "OFA_", {"OFA_KAFKA_PORT": "19092", "OFA_WORK_DIR": "/tmp/w"})
    assert cfg.kafka_port == 19092
    assert cfg.work_dir == "/tmp/w"


def test_describe_lists_every_variable() -> None:
    rows = describe(Example, "X_")
    assert [r[0] for r in rows] == ["X_PORT", "X_ENABLED", "X_NAMES", "X_RATIO"]


def test_cli_rejects_a_bad_log_level_with_a_clear_message() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "compose.cli", "infra", "status"],
        env={"LOG_LEVEL": "LOUD", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "LOG_LEVEL='LOUD'" in out.stderr
