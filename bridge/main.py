"""`ofa-serving bridge`: run one bridge worker (settings from ``BRIDGE_*`` variables).

Exit codes: 0 after a stop (SIGTERM/SIGINT, in every state: also while it waits for Kafka or
NATS), 1 when a rebalance callback failed, 2 for bad settings (raised as ``SettingsError``
before anything starts; the CLI prints it).
"""

from __future__ import annotations

import argparse
import asyncio

from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings
from bridge.worker import BridgeWorker
from ofa_contract.layout import Layout
from ofa_contract.runtime import OpsServer, get_logger, install_stop_signals
from ofa_contract.settings import CommonSettings, describe, from_env

log = get_logger("bridge", "main")


def _help_epilog() -> str:
    rows = describe(CommonSettings) + describe(Layout) + describe(BridgeSettings)
    width = max(len(r[0]) for r in rows)
    return "settings (environment variables):\n" + "\n".join(
        f"  {name:<{width}}  {default}" for name, default, _ in rows
    )


async def _run(common: CommonSettings, layout: Layout, settings: BridgeSettings) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    metrics = BridgeMetrics()
    worker = BridgeWorker(common, layout, settings, metrics)
    ops = OpsServer(
        settings.ops_host,
        settings.ops_port,
        worker.ready_issues,
        registry=metrics.registry,
        info={"process": "bridge", "worker_id": settings.worker_id},
    )
    await ops.start()
    log.info(
        "bridge worker %s starting; ops on http://%s:%d",
        settings.worker_id,
        settings.ops_host,
        ops.port,
        extra={"ops_port": ops.port},
    )
    try:
        await worker.run(stop)
    finally:
        await ops.stop()
    if worker.failed:
        log.error("bridge worker failed", extra={"error": worker.failed})
        return 1
    return 0


def main(argv: list[str]) -> int:
    """Entry point of `ofa-serving bridge`; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="ofa-serving bridge",
        description="Run one bridge worker: derived group topics from Kafka into NATS "
        "JetStream, exactly once, one worker per group across the pool.",
        epilog=_help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    common = from_env(CommonSettings)
    layout = Layout.from_env()
    settings = from_env(BridgeSettings)
    return asyncio.run(_run(common, layout, settings))
