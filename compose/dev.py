"""`ofa-serving dev`: the whole stack on this machine, with a simulated factory.

Starts (or reuses) the local Kafka and NATS, then the splitter, the bridge workers, the edges,
the router and the simulator as child processes, waits until each answers `/ready`, prints the
URLs, restarts a component that dies, and on Ctrl-C / SIGTERM stops them all: SIGTERM, a
grace period, SIGKILL for stragglers, and a final check that no child is left. Kafka and NATS
are stopped too when this command started them (not when they were already running, nor with
``--keep-infra``).

With ``KAFKA_BOOTSTRAP_SERVERS`` and ``NATS_URL`` both set, those servers are used instead of
local ones. Your own settings (``SPLIT_*``, ``EDGE_*``, ``ROUTER_*``, layout names...) reach
the components; dev sets only the servers, ports and ids (from ``DEV_*``) and lists in its banner
any variable of yours it overrode. ``DEV_NAMESPACE`` prefixes every topic, consumer group,
stream, bucket and subject, so that several stacks can share one Kafka and one NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import httpx
import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from compose import local_infra
from compose.simulator import FactoryShape
from ofa_contract.layout import Layout
from ofa_contract.processes import spec
from ofa_contract.runtime import get_logger, install_stop_signals
from ofa_contract.settings import (
    CommonSettings,
    NonNegativeInt,
    Port,
    PositiveFloat,
    PositiveInt,
    Seconds,
    env_var,
    from_env,
    settings_parser,
)

log = get_logger("dev")


class DevSettings(FactoryShape, kw_only=True, frozen=True):
    """``DEV_<FIELD>`` environment variables (command-line options override some)."""

    env_prefix: ClassVar[str] = "DEV_"

    #: Simulated assets (0 = no simulator).
    assets: NonNegativeInt = 12
    #: Events per second of the simulated factory.
    rate: PositiveFloat = 20.0
    #: Public port of the router (dashboard and API).
    router_port: Port = 5555
    #: Router mode: ``proxy`` keeps the dashboard on one origin (no CORS needed).
    router_mode: Literal["proxy", "redirect"] = "proxy"
    #: One edge per port.
    edge_ports: list[Port] = msgspec.field(default_factory=lambda: [8101, 8102])
    #: One bridge worker per operations port.
    bridge_ops_ports: list[Port] = msgspec.field(default_factory=lambda: [8161, 8162])
    #: Operations port of the splitter.
    splitter_ops_port: Port = 9112
    #: Prefix of every Kafka topic, consumer group, stream, bucket and subject of this stack
    #: ("" = the names from the environment, by default the standard ones).
    namespace: str = ""
    #: Partitions of the input topic when this command creates it.
    input_partitions: PositiveInt = 6
    #: Seconds to wait for every component to be ready.
    ready_timeout_s: Seconds = 180.0
    #: Seconds children get to stop after SIGTERM before SIGKILL.
    stop_grace_s: Seconds = 20.0
    #: Where child logs go (default: ``<local infra work dir>/dev-logs``).
    log_dir: str = ""


@dataclass
class Child:
    """One component process."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready_url: str | None
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    log_file: object = field(default=None, repr=False)


class DevError(RuntimeError):
    """The stack could not be started; the message says which part and why."""


#: Replication factor of the input topic ``dev`` creates on a cluster of this many brokers or
#: more (as OpenFactory's cluster has it; on fewer brokers, one replica per broker).
INPUT_REPLICATION = 3


async def ensure_topic(
    bootstrap: str, topic: str, partitions: int, replication: int | None = None
) -> None:
    """Create the input topic when missing (OpenFactory creates it in production), with
    ``replication`` replicas, by default on up to :data:`INPUT_REPLICATION` of the brokers the
    cluster reports: on a 3-broker cluster a single replica would make the whole flow stop with
    the broker that holds it. (A broker that has not yet seen every peer under-reports them.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if replication is None:
            brokers = len((await admin.describe_cluster())["brokers"])
            replication = max(1, min(INPUT_REPLICATION, brokers))
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, partitions, replication)])
    finally:
        await admin.close()


def layout_env(layout: Layout) -> dict[str, str]:
    """The variables that give a child ``layout``: the new names and, until every process reads
    the layout, the old per-process names (the new ones win in a process that reads both)."""
    env: dict[str, str] = {}
    for f in msgspec.structs.fields(Layout):
        if f.name == "namespace":
            continue  # the names below already carry it
        value = str(getattr(layout, f.name))
        env[env_var(Layout, f.name)] = value
        for old in Layout.env_aliases.get(f.name, ()):
            env[old] = value
    return env


def _setting_default(command: str, field: str, fallback: str) -> str:
    """The default of a process setting, read from its Struct (``fallback`` if it has none)."""
    for f in msgspec.structs.fields(spec(command).settings_class()):
        if f.name == field and isinstance(f.default, str):
            return f.default
    return fallback


@dataclass
class Plan:
    """The children in start order, and the user's variables ``dev`` had to override."""

    children: list[Child]
    #: variable -> (the user's value, the value the children get)
    overridden: dict[str, tuple[str, str]]


def plan(
    settings: DevSettings,
    common: CommonSettings,
    layout: Layout,
    run_id: str,
    log_dir: Path,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """The child processes in start order, each with its environment.

    The user's own variables (``SPLIT_*``, ``EDGE_*``, ``ROUTER_*``, layout names...) pass
    through; ``dev`` overrides only what it must: the servers, ports, per-child ids and, with
    ``DEV_NAMESPACE``, the namespaced names (``layout`` already carries the namespace).
    """
    env = os.environ if environ is None else environ
    base = {k: v for k, v in env.items() if not k.startswith("DEV_") and k != "OFA_NAMESPACE"}
    base.setdefault("LOG_FORMAT", "json")
    base.setdefault("EDGE_RETRY_MS", "1000")
    forced = dict(
        KAFKA_BOOTSTRAP_SERVERS=common.kafka_bootstrap_servers,
        NATS_URL=common.nats_url,
        OFA_DEV_RUN=run_id,
        **layout_env(layout),
    )
    children = _children(settings, settings.namespace, env, log_dir)
    overridden: dict[str, tuple[str, str]] = {}
    for child in children:
        child_forced = {**forced, **child.env}
        for var, value in child_forced.items():
            if var in env and env[var] != value:
                overridden[var] = (env[var], value)
        child.env = {**base, **child_forced}
    return Plan(children=children, overridden=overridden)


def _child(name: str, command: str, env: dict[str, str], port: int | None, logs: Path) -> Child:
    """One ``ofa-serving <command>`` child; ``port`` is where it answers ``/ready``."""
    ready = f"http://127.0.0.1:{port}/ready" if port is not None else None
    return Child(
        name, [sys.executable, "-m", "compose.cli", command], env, ready, logs / f"{name}.log"
    )


def _children(settings: DevSettings, ns: str, env: Mapping[str, str], logs: Path) -> list[Child]:
    """Every child with only the variables ``dev`` sets for it (filled in by :func:`plan`)."""

    def namespaced(var: str, command: str, field: str, fallback: str) -> dict[str, str]:
        if not ns:
            return {}
        return {var: ns + env.get(var, _setting_default(command, field, fallback))}

    split_env = {
        **namespaced("SPLIT_GROUP_ID", "split", "group_id", "ofa-splitter"),
        **namespaced(
            "SPLIT_TRANSACTIONAL_ID_PREFIX", "split", "transactional_id_prefix", "ofa-splitter"
        ),
        "SPLIT_OPS_PORT": str(settings.splitter_ops_port),
    }
    children = [_child("splitter", "split", split_env, settings.splitter_ops_port, logs)]
    group = namespaced("BRIDGE_CONSUMER_GROUP", "bridge", "consumer_group", "ofa-bridge")
    for i, port in enumerate(settings.bridge_ops_ports, 1):
        bridge_env = {**group, "BRIDGE_WORKER_ID": f"dev-bridge-{i}", "BRIDGE_OPS_PORT": str(port)}
        children.append(_child(f"bridge-{i}", "bridge", bridge_env, port, logs))
    router = settings.router_port
    # The dashboard's origin, unless the user chose the origins.
    cors = (
        {}
        if "EDGE_CORS_ORIGINS" in env
        else {"EDGE_CORS_ORIGINS": f"http://127.0.0.1:{router},http://localhost:{router}"}
    )
    for i, port in enumerate(settings.edge_ports, 1):
        edge_env = {"EDGE_PORT": str(port), "EDGE_ID": f"dev-edge-{i}", **cors}
        children.append(_child(f"edge-{i}", "edge", edge_env, port, logs))
    router_env = {"ROUTER_PORT": str(router), "ROUTER_MODE": settings.router_mode}
    children.append(_child("router", "router", router_env, router, logs))
    if settings.assets > 0:
        children.append(_child("simulator", "simulate", settings.simulator_env(), None, logs))
    return children


def port_problems(settings: DevSettings) -> list[str]:
    """Every port of the stack that is taken or repeated, naming the variable to change."""
    wanted = [("DEV_ROUTER_PORT", "router", settings.router_port)]
    wanted += [("DEV_EDGE_PORTS", f"edge-{i}", p) for i, p in enumerate(settings.edge_ports, 1)]
    wanted += [
        ("DEV_BRIDGE_OPS_PORTS", f"bridge-{i}", p)
        for i, p in enumerate(settings.bridge_ops_ports, 1)
    ]
    wanted.append(("DEV_SPLITTER_OPS_PORT", "splitter", settings.splitter_ops_port))
    problems = []
    seen: dict[int, str] = {}
    for var, who, port in wanted:
        if port in seen:
            problems.append(f"port {port} is given to both {seen[port]} and {who}; set {var}")
        elif local_infra.port_open(port):
            problems.append(
                f"port {port} ({who}) is taken by another process; set {var} to a free port"
            )
        seen[port] = who
    return problems


async def start_child(child: Child) -> None:
    """Launch one child in this process group, logging to its file."""
    child.log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(child.log_path, "ab")  # noqa: SIM115, ASYNC230 - handed to the child
    child.log_file = logf
    try:
        # Same session and process group as `dev`: a terminal's Ctrl-C reaches every child,
        # and none outlives the group.
        child.proc = await asyncio.create_subprocess_exec(
            *child.command,
            env=child.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=logf,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=False,
        )
    finally:
        logf.close()


async def wait_ready(children: list[Child], timeout: float) -> None:
    """Wait until every child with a ready URL answers 200; fail if one exits."""
    deadline = time.monotonic() + timeout
    pending = [c for c in children if c.ready_url]
    last: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=3) as client:
        while pending:
            for c in children:
                if c.proc is not None and c.proc.returncode is not None:
                    raise DevError(
                        f"{c.name} exited with status {c.proc.returncode}; see {c.log_path}"
                    )
            still = []
            for c in pending:
                assert c.ready_url is not None
                try:
                    r = await client.get(c.ready_url)
                    if r.status_code == 200:
                        print(f"  ready  {c.name}", flush=True)
                        continue
                    last[c.name] = r.text[:300]
                except httpx.HTTPError as exc:
                    last[c.name] = f"{type(exc).__name__}"
                still.append(c)
            pending = still
            if pending and time.monotonic() > deadline:
                raise DevError(
                    "not ready within the timeout: "
                    + "; ".join(f"{c.name}: {last.get(c.name, '?')}" for c in pending)
                )
            if pending:
                await asyncio.sleep(0.5)


async def stop_children(children: list[Child], grace: float) -> list[str]:
    """SIGTERM in reverse start order, wait, SIGKILL stragglers; return the names killed."""
    running = [c for c in reversed(children) if c.proc and c.proc.returncode is None]
    for c in running:
        assert c.proc is not None
        with contextlib.suppress(ProcessLookupError):
            c.proc.send_signal(signal.SIGTERM)
    killed = []
    for c in running:
        assert c.proc is not None
        try:
            await asyncio.wait_for(c.proc.wait(), grace)
        except TimeoutError:
            killed.append(c.name)
            with contextlib.suppress(ProcessLookupError):
                c.proc.kill()
            await c.proc.wait()
    return killed


async def _servers(infra_cfg: local_infra.InfraConfig) -> tuple[CommonSettings, bool]:
    """The user's Kafka and NATS when both are set, else the local ones (started if needed);
    True when this call started them."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("NATS_URL"):
        common = from_env(CommonSettings)
        print(f"using Kafka {common.kafka_bootstrap_servers} and NATS {common.nats_url}")
        return common, False
    before = local_infra.status(infra_cfg)
    was_running = all(
        v["running"] for v in before.values() if isinstance(v, dict) and "running" in v
    )
    print("starting local Kafka and NATS (first run downloads Kafka jars)...", flush=True)
    state = await local_infra.up(infra_cfg)
    common = msgspec.structs.replace(
        from_env(CommonSettings),
        kafka_bootstrap_servers=state.kafka_bootstrap,
        nats_url=state.nats_url,
    )
    return common, not was_running


async def run(settings: DevSettings, keep_infra: bool) -> int:
    """Start everything, serve until stopped, stop everything."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    run_id = uuid.uuid4().hex[:12]
    taken = port_problems(settings)
    if taken:  # before anything starts, like the Kafka/NATS port check of local_infra.up
        print(f"error: {'; '.join(taken)}", file=sys.stderr, flush=True)
        return 1
    layout = Layout.from_env().namespaced(settings.namespace)
    infra_cfg = from_env(local_infra.InfraConfig, "OFA_")
    common, started_infra = await _servers(infra_cfg)
    log_dir = Path(settings.log_dir or Path(infra_cfg.work_dir) / "dev-logs")
    the_plan = plan(settings, common, layout, run_id, log_dir)
    children = the_plan.children
    code = 0
    try:
        await ensure_topic(
            common.kafka_bootstrap_servers, layout.input_topic, settings.input_partitions
        )
        for child in children:
            await start_child(child)
        ready = asyncio.create_task(wait_ready(children, settings.ready_timeout_s))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({ready, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
        else:
            ready.result()  # raises DevError
            stopper.cancel()
            print(banner(settings, common, layout, the_plan, log_dir), flush=True)
            code = await _supervise(children, stop)
    except DevError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        print("stopping...", flush=True)
        killed = await stop_children(children, settings.stop_grace_s)
        if killed:
            print(f"killed after the grace period: {', '.join(killed)}", flush=True)
        left = [c.name for c in children if c.proc and c.proc.returncode is None]
        if left:  # cannot happen after kill+wait; say so loudly if it ever does
            print(f"error: still running: {left}", file=sys.stderr)
            code = code or 1
        if started_infra and not keep_infra:
            await asyncio.to_thread(local_infra.down, infra_cfg)
            print("stopped local Kafka and NATS", flush=True)
        print("stopped", flush=True)
    return code


def banner(
    settings: DevSettings, common: CommonSettings, layout: Layout, the_plan: Plan, log_dir: Path
) -> str:
    """What is up, where, and which of the user's variables ``dev`` overrode."""
    router = f"http://127.0.0.1:{settings.router_port}"
    lines = [
        "",
        "ofa-serving dev is up:",
        f"  dashboard      {router}/",
        f"  asset stream   {router}/asset_stream?asset_uuid=SIM-ASSET-001",
        f"  asset state    {router}/asset_state?asset_uuid=SIM-ASSET-001",
        f"  groups         {router}/groups",
        f"  API schema     {router}/schema",
        *(f"  edge           http://127.0.0.1:{p}/" for p in settings.edge_ports),
        f"  Kafka {common.kafka_bootstrap_servers}   NATS {common.nats_url}",
        f"  input topic {layout.input_topic}   stream {layout.stream}"
        + (f"   (namespace {layout.namespace!r})" if layout.namespace else ""),
        f"  logs in {log_dir}",
        f"  pids {' '.join(f'{c.name}={c.proc.pid}' for c in the_plan.children if c.proc)}",
    ]
    if the_plan.overridden:
        lines.append("  overridden (dev sets these per child; change the DEV_* setting instead):")
        lines += [
            f"    {var}: yours {mine!r}, used {used!r}"
            for var, (mine, used) in sorted(the_plan.overridden.items())
        ]
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


async def _supervise(children: list[Child], stop: asyncio.Event) -> int:
    """Run until stopped, restarting a component that dies (as a container runtime would);
    one that keeps dying (5 times within a minute) stops the stack with exit status 1."""
    deaths: dict[str, list[float]] = {}
    while not stop.is_set():
        for c in children:
            if c.proc is None or c.proc.returncode is None:
                continue
            now = time.monotonic()
            recent = [t for t in deaths.get(c.name, []) if now - t < 60] + [now]
            deaths[c.name] = recent
            if len(recent) >= 5:
                print(
                    f"error: {c.name} keeps exiting (last status {c.proc.returncode}); "
                    f"see {c.log_path}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            print(f"{c.name} exited with status {c.proc.returncode}; restarting", flush=True)
            await start_child(c)
            print(f"  pid {c.name}={c.proc.pid}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return 0


def main(argv: list[str]) -> int:
    """`ofa-serving dev`."""
    defaults = from_env(DevSettings)
    p = settings_parser("ofa-serving dev", DevSettings, __doc__ or "")
    p.add_argument("--port", type=int, default=defaults.router_port, help="router port")
    p.add_argument("--assets", type=int, default=defaults.assets)
    p.add_argument("--workcenters", type=int, default=defaults.workcenters)
    p.add_argument("--rate", type=float, default=defaults.rate, help="simulated events/s")
    p.add_argument("--mode", choices=["proxy", "redirect"], default=defaults.router_mode)
    p.add_argument("--keep-infra", action="store_true", help="leave Kafka and NATS running at exit")
    args = p.parse_args(argv)
    settings = msgspec.structs.replace(
        defaults,
        router_port=args.port,
        assets=args.assets,
        workcenters=args.workcenters,
        rate=args.rate,
        router_mode=args.mode,
    )
    return asyncio.run(run(settings, args.keep_infra))
