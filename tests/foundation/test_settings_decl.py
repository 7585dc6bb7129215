"""Declarative settings: env_prefix, constrained types, Literals, aliases, the process registry."""

from __future__ import annotations

from typing import ClassVar

import msgspec
import pytest

from ofa_contract.processes import PROCESSES, SHARED_SETTINGS, process_prefixes, spec
from ofa_contract.settings import (
    CommonSettings,
    LogLevel,
    NonEmptyStr,
    Port,
    PositiveInt,
    Seconds,
    SettingsError,
    deprecated_aliases,
    describe,
    from_env,
)


class Knobs(msgspec.Struct, kw_only=True, frozen=True):
    env_prefix: ClassVar[str] = "KNOB_"
    env_aliases: ClassVar[dict[str, tuple[str, ...]]] = {"max_connections": ("OLD_MAX",)}

    max_connections: PositiveInt = 10
    port: Port = 8080
    name: NonEmptyStr = "x"
    grace_s: Seconds = 1.0
    level: LogLevel = "INFO"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"KNOB_MAX_CONNECTIONS": "-5"}, "KNOB_MAX_CONNECTIONS='-5'"),
        ({"KNOB_MAX_CONNECTIONS": "0"}, "KNOB_MAX_CONNECTIONS='0'"),
        ({"KNOB_PORT": "70000"}, "KNOB_PORT='70000'"),
        ({"KNOB_GRACE_S": "0"}, "KNOB_GRACE_S='0'"),
        ({"KNOB_LEVEL": "LOUD"}, "KNOB_LEVEL='LOUD'"),
        ({"OLD_MAX": "-1"}, "OLD_MAX='-1'"),
    ],
)
def test_a_bad_value_names_the_variable_actually_set(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle) as err:
        from_env(Knobs, environ=env)
    assert err.value.exit_code == 2


def test_prefix_from_the_class_and_case_insensitive_literals() -> None:
    k = from_env(Knobs, environ={"KNOB_PORT": "0", "KNOB_LEVEL": "debug", "OLD_MAX": "3"})
    assert (k.port, k.level, k.max_connections) == (0, "DEBUG", 3)
    assert from_env(CommonSettings, environ={"LOG_FORMAT": "TEXT"}).log_format == "text"


def test_describe_shows_constraints_and_aliases() -> None:
    rows = {var: type_ for var, _, type_ in describe(Knobs)}
    assert rows["KNOB_MAX_CONNECTIONS"] == "int (> 0)"
    assert rows["KNOB_PORT"] == "int (>= 0, <= 65535)"
    assert "'INFO'" in rows["KNOB_LEVEL"]
    assert deprecated_aliases(Knobs) == {"OLD_MAX": "KNOB_MAX_CONNECTIONS"}


def test_the_process_registry_resolves_lazily_and_prefixes_agree() -> None:
    assert [p.command for p in PROCESSES] == [
        "simulate",
        "split",
        "bridge",
        "edge",
        "router",
        "dev",
    ]
    assert process_prefixes() == ("SIM_", "SPLIT_", "BRIDGE_", "EDGE_", "ROUTER_", "DEV_")
    for p in PROCESSES:
        assert callable(p.main()), p.command
        cls = p.settings_class()
        assert issubclass(cls, msgspec.Struct)
        # Until every owner declares env_prefix on its Struct, "" is allowed; once declared it
        # must be the registry's.
        assert p.declared_prefix() in ("", p.prefix), p.command
    assert spec("edge").prefix == "EDGE_"
    with pytest.raises(KeyError):
        spec("nope")
    for path in SHARED_SETTINGS:
        module, _, name = path.partition(":")
        assert issubclass(getattr(__import__(module, fromlist=[name]), name), msgspec.Struct)


def test_settings_help_lists_every_variable_with_its_default() -> None:
    from ofa_contract.settings import settings_help

    text = settings_help(Knobs, "Run the knobs.")
    assert text.startswith("Run the knobs.\n\nSettings come from KNOB_* variables")
    assert "  KNOB_PORT (default 8080)" in text
