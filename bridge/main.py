"""`ofa-serving bridge`: run one bridge worker (settings from ``BRIDGE_*`` variables)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings
from bridge.worker import BridgeWorker
from ofa_contract.runtime import OpsServer, install_stop_signals
from ofa_contract.settings import CommonSettings, describe, from_env

log = logging.getLogger("bridge")


def _help_epilog() -> str:
    rows = describe(CommonSettings) + describe(BridgeSettings, "BRIDGE_")
    width = max(len(r[0]) for r in rows)
    return "settings (environment variables):\n" + "\n".join(
        f"  {name:<{width}}  {default}" for name, default, _ in rows
    )


async def _run(common: CommonSettings, settings: BridgeSettings) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    metrics = BridgeMetrics()
    worker = BridgeWorker(common, settings, metrics)
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
    settings = from_env(BridgeSettings, "BRIDGE_")
    return asyncio.run(_run(common, settings))
