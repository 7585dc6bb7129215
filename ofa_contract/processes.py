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


#: Every process, in the order ``ofa-serving --help`` lists them.
PROCESSES: tuple[ProcessSpec, ...] = (
    ProcessSpec(
        command="simulate",
        process="simulator",
        entry="compose.simulator:main",
        settings="compose.simulator:SimulateSettings",
        help="write a virtual factory's events to ofa_assets",
        prefix="SIM_",
    ),
    ProcessSpec(
        command="split",
        process="splitter",
        entry="splitter.main:main",
        settings="splitter.settings:SplitterSettings",
        help="split ofa_assets into per-group topics (exactly once)",
        prefix="SPLIT_",
    ),
    ProcessSpec(
        command="bridge",
        process="bridge worker",
        entry="bridge.main:main",
        settings="bridge.settings:BridgeSettings",
        help="run one bridge worker: derived topics -> NATS JetStream",
        prefix="BRIDGE_",
    ),
    ProcessSpec(
        command="edge",
        process="edge",
        entry="edge.main:main",
        settings="edge.settings:EdgeSettings",
        help="run one SSE edge node",
        prefix="EDGE_",
    ),
    ProcessSpec(
        command="router",
        process="router",
        entry="router.main:main",
        settings="router.settings:RouterSettings",
        help="run the public HTTP router (port 5555)",
        prefix="ROUTER_",
    ),
    ProcessSpec(
        command="dev",
        process="dev",
        entry="compose.dev:main",
        settings="compose.dev:DevSettings",
        help="run the whole stack locally with a simulated factory",
        prefix="DEV_",
    ),
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
