"""`ofa-serving dev`: the whole stack on this machine, with a simulated factory.

Starts (or reuses) the local Kafka and NATS, then the splitter, the bridge workers, the edges,
the router and the simulator as child processes, waits until each answers `/ready`, prints the
URLs, restarts a component that dies, and on Ctrl-C / SIGTERM stops them all: SIGTERM, a
grace period, SIGKILL for stragglers, and a final check that no child is left. Kafka and NATS
are stopped too when this command started them (not when they were already running, nor with
``--keep-infra``).

With ``KAFKA_BOOTSTRAP_SERVERS`` and ``NATS_URL`` both set, those servers are used instead of
local ones. ``DEV_NAMESPACE`` prefixes every Kafka topic and consumer group, so that several
stacks can share one Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from compose import local_infra
from ofa_contract.runtime import install_stop_signals
from ofa_contract.settings import CommonSettings, from_env

log = logging.getLogger("ofa.dev")


class DevSettings(msgspec.Struct, kw_only=True, frozen=True):
    """``DEV_<FIELD>`` environment variables (command-line options override some)."""

    #: Public port of the router (dashboard and API).
    router_port: int = 5555
    #: Router mode: ``proxy`` keeps the dashboard on one origin (no CORS needed).
    router_mode: str = "proxy"
    #: One edge per port.
    edge_ports: list[int] = msgspec.field(default_factory=lambda: [8101, 8102])
    #: One bridge worker per operations port.
    bridge_ops_ports: list[int] = msgspec.field(default_factory=lambda: [8161, 8162])
    splitter_ops_port: int = 9112
    #: Simulated factory: assets, workcenters, events per second (0 assets = no simulator).
    assets: int = 12
    workcenters: int = 3
    rate: float = 20.0
    #: Prefix of every Kafka topic and consumer group of this stack ("" = the standard names).
    namespace: str = ""
    #: Partitions of the input topic when this command creates it.
    input_partitions: int = 6
    #: Seconds to wait for every component to be ready.
    ready_timeout_s: float = 180.0
    #: Seconds children get to stop after SIGTERM before SIGKILL.
    stop_grace_s: float = 20.0
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


async def ensure_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create the input topic when missing (OpenFactory creates it in production)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def plan(settings: DevSettings, common: CommonSettings, run_id: str, log_dir: Path) -> list[Child]:
    """The child processes in start order, each with its environment."""
    ns = settings.namespace
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPLIT_", "BRIDGE_", "EDGE_", "ROUTER_", "SIM_", "DEV_"))
    }
    base.update(
        KAFKA_BOOTSTRAP_SERVERS=common.kafka_bootstrap_servers,
        NATS_URL=common.nats_url,
        INPUT_TOPIC=common.input_topic,
        LOG_FORMAT="json",
        OFA_DEV_RUN=run_id,
    )
    topic_prefix = f"{ns}asset_stream_"
    changelog = f"{ns}ofa_splitter_assets"
    groups = f"{ns}ofa_groups"
    cmd = [sys.executable, "-m", "compose.cli"]
    children = [
        Child(
            "splitter",
            [*cmd, "split"],
            dict(
                base,
                SPLIT_GROUP_ID=f"{ns}ofa-splitter",
                SPLIT_TRANSACTIONAL_ID_PREFIX=f"{ns}ofa-splitter",
                SPLIT_TOPIC_PREFIX=topic_prefix,
                SPLIT_GROUPS_TOPIC=groups,
                SPLIT_CHANGELOG_TOPIC=changelog,
                SPLIT_DLQ_TOPIC=f"{ns}ofa_assets_dlq",
                SPLIT_OPS_PORT=str(settings.splitter_ops_port),
            ),
            f"http://127.0.0.1:{settings.splitter_ops_port}/ready",
            log_dir / "splitter.log",
        )
    ]
    for i, port in enumerate(settings.bridge_ops_ports, 1):
        children.append(
            Child(
                f"bridge-{i}",
                [*cmd, "bridge"],
                dict(
                    base,
                    BRIDGE_CONSUMER_GROUP=f"{ns}ofa-bridge",
                    BRIDGE_TOPIC_PREFIX=topic_prefix,
                    BRIDGE_WORKER_ID=f"dev-bridge-{i}",
                    BRIDGE_OPS_PORT=str(port),
                ),
                f"http://127.0.0.1:{port}/ready",
                log_dir / f"bridge-{i}.log",
            )
        )
    for i, port in enumerate(settings.edge_ports, 1):
        children.append(
            Child(
                f"edge-{i}",
                [*cmd, "edge"],
                dict(
                    base,
                    EDGE_PORT=str(port),
                    EDGE_ID=f"dev-edge-{i}",
                    EDGE_RETRY_MS="1000",
                    EDGE_CORS_ORIGINS=f"http://127.0.0.1:{settings.router_port},"
                    f"http://localhost:{settings.router_port}",
                ),
                f"http://127.0.0.1:{port}/ready",
                log_dir / f"edge-{i}.log",
            )
        )
    children.append(
        Child(
            "router",
            [*cmd, "router"],
            dict(
                base,
                ROUTER_PORT=str(settings.router_port),
                ROUTER_MODE=settings.router_mode,
                ROUTER_CHANGELOG_TOPIC=changelog,
                ROUTER_GROUPS_TOPIC=groups,
                ROUTER_GROUP_TOPIC_PREFIX=topic_prefix,
            ),
            f"http://127.0.0.1:{settings.router_port}/ready",
            log_dir / "router.log",
        )
    )
    if settings.assets > 0:
        children.append(
            Child(
                "simulator",
                [*cmd, "simulate"],
                dict(
                    base,
                    SIM_ASSETS=str(settings.assets),
                    SIM_WORKCENTERS=str(settings.workcenters),
                    SIM_RATE=str(settings.rate),
                ),
                None,
                log_dir / "simulator.log",
            )
        )
    return children


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


async def run(settings: DevSettings, keep_infra: bool) -> int:
    """Start everything, serve until stopped, stop everything."""
    stop = asyncio.Event()
    install_stop_signals(stop)
    run_id = uuid.uuid4().hex[:12]
    infra_cfg = from_env(local_infra.InfraConfig, "OFA_")
    started_infra = False
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("NATS_URL"):
        common = from_env(CommonSettings)
        print(f"using Kafka {common.kafka_bootstrap_servers} and NATS {common.nats_url}")
    else:
        before = local_infra.status(infra_cfg)
        was_running = all(
            v["running"] for v in before.values() if isinstance(v, dict) and "running" in v
        )
        print("starting local Kafka and NATS (first run downloads Kafka jars)...", flush=True)
        state = await local_infra.up(infra_cfg)
        started_infra = not was_running
        common = msgspec.structs.replace(
            from_env(CommonSettings),
            kafka_bootstrap_servers=state.kafka_bootstrap,
            nats_url=state.nats_url,
        )
    log_dir = Path(settings.log_dir or Path(infra_cfg.work_dir) / "dev-logs")
    children = plan(settings, common, run_id, log_dir)
    code = 0
    try:
        await ensure_topic(
            common.kafka_bootstrap_servers, common.input_topic, settings.input_partitions
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
            router = f"http://127.0.0.1:{settings.router_port}"
            print(
                "\nofa-serving dev is up:\n"
                f"  dashboard      {router}/\n"
                f"  asset stream   {router}/asset_stream?asset_uuid=SIM-ASSET-001\n"
                f"  asset state    {router}/asset_state?asset_uuid=SIM-ASSET-001\n"
                f"  groups         {router}/groups\n"
                f"  API schema     {router}/schema\n"
                + "".join(f"  edge           http://127.0.0.1:{p}/\n" for p in settings.edge_ports)
                + f"  Kafka {common.kafka_bootstrap_servers}   NATS {common.nats_url}\n"
                f"  logs in {log_dir}\n"
                f"  pids {' '.join(f'{c.name}={c.proc.pid}' for c in children if c.proc)}\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
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
    defaults = from_env(DevSettings, "DEV_")
    p = argparse.ArgumentParser(
        prog="ofa-serving dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
