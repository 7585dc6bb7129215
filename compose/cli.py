"""`ofa-serving`: one CLI, one subcommand per process.

Each process lives in its own module exposing ``main(argv) -> int``; modules are imported only
when their subcommand runs, so `ofa-serving infra status` does not import the web stack.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys

from ofa_contract.runtime import setup_logging
from ofa_contract.settings import SettingsError, from_env

#: subcommand -> (module with main(argv) -> int, one-line help)
PROCESSES: dict[str, tuple[str, str]] = {
    "simulate": ("compose.simulator", "write a virtual factory's events to ofa_assets"),
    "split": ("router.splitter_main", "split ofa_assets into per-group topics (exactly once)"),
    "bridge": ("bridge.main", "run one bridge worker: derived topics -> NATS JetStream"),
    "edge": ("edge.main", "run one SSE edge node"),
    "router": ("router.main", "run the public HTTP router (port 5555)"),
    "dev": ("compose.dev", "run the whole stack locally with a simulated factory"),
}


def _infra(argv: list[str]) -> int:
    from compose import local_infra

    parser = argparse.ArgumentParser(
        prog="ofa-serving infra",
        description="Local Apache Kafka (KRaft, from Maven Central jars) and nats-server "
        "(JetStream) on 127.0.0.1. Ports and directories: OFA_KAFKA_PORT, "
        "OFA_KAFKA_CONTROLLER_PORT, OFA_NATS_PORT, OFA_NATS_MONITOR_PORT, OFA_WORK_DIR, "
        "OFA_CACHE_DIR.",
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="3 Kafka brokers (RF 3, min ISR 2) and a 3-node NATS JetStream cluster on "
        "127.0.0.1, ports from OFA_CLUSTER_BASE_PORT (default 19092); `down` always stops both",
    )
    args = parser.parse_args(argv)
    cfg = from_env(local_infra.InfraConfig, "OFA_")
    if args.cluster:
        return _cluster(args.action, cfg)
    if args.action == "up":
        try:
            state = asyncio.run(local_infra.up(cfg))
        except local_infra.InfraError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"Kafka   {state.kafka_bootstrap}  (pid {state.kafka_pid})")
        print(f"NATS    {state.nats_url}  monitor {state.nats_monitor}  (pid {state.nats_pid})")
        print(f"export KAFKA_BOOTSTRAP_SERVERS={state.kafka_bootstrap} NATS_URL={state.nats_url}")
        return 0
    if args.action == "down":
        state = local_infra.down(cfg)
        print(f"stopped Kafka pid {state.kafka_pid} and nats-server pid {state.nats_pid}")
        _cluster("down", cfg, quiet=True)
        return 0
    print(local_infra.status_json(cfg))
    st = local_infra.status(cfg)
    return 0 if all(v["running"] for k, v in st.items() if isinstance(v, dict)) else 3


def _cluster(action: str, cfg: object, quiet: bool = False) -> int:
    """`infra up|down|status --cluster`."""
    import json

    from compose import local_cluster, local_infra

    assert isinstance(cfg, local_infra.InfraConfig)
    if action == "up":
        try:
            state = asyncio.run(local_cluster.up(cfg))
        except local_infra.InfraError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for n, kp, np in zip(state.nodes, state.kafka_pids, state.nats_pids, strict=True):
            print(
                f"{n.name}  Kafka {n.host}:{n.kafka_port} (pid {kp})  "
                f"NATS nats://{n.host}:{n.nats_port} (pid {np})"
            )
        print(
            f"export KAFKA_BOOTSTRAP_SERVERS={state.kafka_bootstrap} NATS_URL={state.nats_url} "
            "SPLIT_TOPIC_REPLICATION=3 BRIDGE_REPLICAS=3"
        )
        return 0
    if action == "down":
        state = local_cluster.down(cfg)
        if state.nodes or not quiet:
            print(f"stopped cluster: Kafka pids {state.kafka_pids}, NATS pids {state.nats_pids}")
        return 0
    st = local_cluster.status(cfg)
    print(json.dumps(st, indent=2))
    nodes = st["cluster"]
    assert isinstance(nodes, list)
    return 0 if all(n["kafka"]["running"] and n["nats"]["running"] for n in nodes) else 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ofa-serving` command."""
    argv = sys.argv[1:] if argv is None else argv
    commands = {"infra": "start/stop/show the local Kafka and NATS servers"}
    commands.update({name: help_ for name, (_, help_) in PROCESSES.items()})
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ofa-serving COMMAND [options]\n\ncommands:")
        for name, help_ in commands.items():
            print(f"  {name:<10} {help_}")
        print("\n`ofa-serving COMMAND --help` for the options of one command.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    fmt = os.environ.get("LOG_FORMAT", "text" if sys.stderr.isatty() else "json")
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        print(
            f"error: LOG_LEVEL={level!r}: expected DEBUG, INFO, WARNING or ERROR", file=sys.stderr
        )
        return 2
    if fmt not in ("json", "text"):
        print(f"error: LOG_FORMAT={fmt!r}: expected json or text", file=sys.stderr)
        return 2
    setup_logging(level=level, fmt=fmt)
    try:
        if command == "infra":
            return _infra(rest)
        if command not in PROCESSES:
            print(f"error: unknown command {command!r}; run `ofa-serving --help`", file=sys.stderr)
            return 2
        module = importlib.import_module(PROCESSES[command][0])
        return int(module.main(rest))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("ofa_serving").info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
