"""`ofa-serving`: one CLI, one subcommand per process.

The processes are listed once, in :data:`ofa_contract.processes.PROCESSES`; each exposes
``main(argv) -> int`` and is imported only when its subcommand runs, so `ofa-serving infra
status` does not import the web stack. Exit status: 0 done, 1 failed, 2 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ofa_contract.processes import PROCESSES, spec
from ofa_contract.runtime import get_logger, setup_logging
from ofa_contract.settings import CommonSettings, SettingsError, from_env


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


def _logging(environ: dict[str, str] | None = None) -> CommonSettings:
    """Logging settings from the environment; ``LOG_FORMAT`` unset means text on a terminal."""
    env = dict(os.environ if environ is None else environ)
    if not env.get("LOG_FORMAT"):
        env["LOG_FORMAT"] = "text" if sys.stderr.isatty() else "json"
    return from_env(CommonSettings, environ=env)


def _usage() -> None:
    print("usage: ofa-serving COMMAND [options]\n\ncommands:")
    print(f"  {'infra':<10} start/stop/show the local Kafka and NATS servers")
    for p in PROCESSES:
        print(f"  {p.command:<10} {p.help}")
    print("\n`ofa-serving COMMAND --help` for the options of one command.")


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
            "SPLIT_TOPIC_REPLICATION=3 BRIDGE_REPLICAS=3 EDGE_REGISTRY_REPLICAS=3"
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
    """Entry point of the `ofa-serving` command (exit 2 for a configuration error)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        _usage()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        common = _logging()
        setup_logging(level=common.log_level, fmt=common.log_format)
        if command == "infra":
            return _infra(rest)
        try:
            entry = spec(command).main()
        except KeyError:
            print(f"error: unknown command {command!r}; run `ofa-serving --help`", file=sys.stderr)
            return 2
        return int(entry(rest))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        get_logger("cli").info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
