"""The registry of ``ofa-serving`` processes: one place for what the CLI runs, what
``compose.envdoc`` documents and which variables ``dev`` passes through.

Modules are named by string and imported only when needed, so ``ofa-serving infra status`` does
not import the web stack.
"""

from __future__ import annotations

import importlib
from typing import Any

import msgspec

from ofa_contract.settings import env_prefix


class ProcessSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One ``ofa-serving <command>``."""

    #: The CLI subcommand.
    command: str
    #: What the process is called in logs and documentation.
    process: str
    #: ``module:function``; the function takes ``argv`` and returns the exit status.
    entry: str
    #: ``module:Class`` of its settings Struct (its ``env_prefix`` names the variables).
    settings: str
    #: One-line help.
    help: str
    #: The prefix of its variables. Also declared as the settings Struct's ``env_prefix``
    #: (a test keeps both equal); here so that listing prefixes imports nothing.
    prefix: str

    def main(self) -> Any:
        """The entry function (imports its module)."""
        module, _, name = self.entry.partition(":")
        return getattr(importlib.import_module(module), name or "main")

    def settings_class(self) -> type[msgspec.Struct]:
        """The settings Struct (imports its module)."""
        module, _, name = self.settings.partition(":")
        cls: type[msgspec.Struct] = getattr(importlib.import_module(module), name)
        return cls

    def declared_prefix(self) -> str:
        """The settings Struct's own ``env_prefix`` ("" while it declares none)."""
        return env_prefix(self.settings_class())


#: Every process, in the order ``ofa-serving --help`` lists them:
#: (command, process, prefix, entry module, ``settings module:Class``, help). Entry functions are
#: all called ``main``.
_TABLE: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("simulate", "simulator", "SIM_", "compose.simulator", "compose.simulator:SimulateSettings",
     "write a virtual factory's events to ofa_assets"),
    ("split", "splitter", "SPLIT_", "splitter.main", "splitter.settings:SplitterSettings",
     "split ofa_assets into per-group topics (exactly once)"),
    ("bridge", "bridge worker", "BRIDGE_", "bridge.main", "bridge.settings:BridgeSettings",
     "run one bridge worker: derived topics -> NATS JetStream"),
    ("edge", "edge", "EDGE_", "edge.main", "edge.settings:EdgeSettings",
     "run one SSE edge node"),
    ("router", "router", "ROUTER_", "router.main", "router.settings:RouterSettings",
     "run the public HTTP router (port 5555)"),
    ("dev", "dev", "DEV_", "compose.dev", "compose.dev:DevSettings",
     "run the whole stack locally with a simulated factory"),
)  # fmt: skip

PROCESSES: tuple[ProcessSpec, ...] = tuple(
    ProcessSpec(
        command=command,
        process=process,
        prefix=prefix,
        entry=f"{module}:main",
        settings=settings,
        help=help_,
    )
    for command, process, prefix, module, settings, help_ in _TABLE
)

#: Shared settings Structs read without a process prefix, documented first: ``module:Class``.
SHARED_SETTINGS: tuple[str, ...] = (
    "ofa_contract.settings:CommonSettings",
    "ofa_contract.layout:Layout",
    "ofa_contract.auth:AuthSettings",
)


def spec(command: str) -> ProcessSpec:
    """The spec of ``command``; KeyError when there is none."""
    for p in PROCESSES:
        if p.command == command:
            return p
    raise KeyError(command)


def process_prefixes() -> tuple[str, ...]:
    """Every process's variable prefix (``SIM_``, ``SPLIT_``...), e.g. for ``dev`` to know
    which variables of the user's environment are process settings."""
    return tuple(p.prefix for p in PROCESSES)
