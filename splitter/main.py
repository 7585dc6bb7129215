"""`ofa-serving split`: run one splitter instance (settings from ``SPLIT_*`` variables).

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT: the open transaction is committed), 1 when
the splitter failed (fenced, Kafka errors, restore timeout), 2 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from prometheus_client import CollectorRegistry

from ofa_contract.runtime import OpsServer, install_stop_signals
from ofa_contract.settings import CommonSettings, describe, from_env
from splitter.engine import Splitter, SplitterError
from splitter.grouping import GroupingError, load_strategy
from splitter.settings import SplitterSettings

log = logging.getLogger("ofa_serving.splitter")

PREFIX = "SPLIT_"


async def serve(common: CommonSettings, settings: SplitterSettings) -> int:
    """Run a splitter with its ops server until SIGTERM/SIGINT; return the exit code."""
    strategy = load_strategy(settings.grouping, settings.grouping_config())
    registry = CollectorRegistry()
    splitter = Splitter(common, settings, strategy, registry)
    stop = asyncio.Event()
    install_stop_signals(stop)
    ops = OpsServer(
        settings.ops_host,
        settings.ops_port,
        splitter.ready_issues,
        registry=registry,
        info={
            "component": "splitter",
            "input_topic": common.input_topic,
            "group_id": settings.group_id,
            "grouping": settings.grouping,
            "topic_prefix": settings.topic_prefix,
        },
    )
    await ops.start()
    log.info("ops server listening", extra={"host": settings.ops_host, "port": ops.port})
    try:
        await splitter.start()
        log.info("splitter started", extra={"input_topic": common.input_topic})
        await splitter.run(stop)
        log.info("splitter stopped")
        return 0
    except SplitterError as exc:
        log.error("splitter failed", extra={"error": str(exc)})
        return 1
    finally:
        await splitter.close()
        await ops.stop()


def main(argv: list[str]) -> int:
    """Entry point of `ofa-serving split`."""
    parser = argparse.ArgumentParser(
        prog="ofa-serving split",
        description="Split the input topic into per-group derived topics, exactly once. "
        "Settings come from environment variables:\n"
        + "\n".join(f"  {n} (default {d})" for n, d, _ in describe(SplitterSettings, PREFIX)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    common = from_env(CommonSettings)
    settings = from_env(SplitterSettings, PREFIX)
    try:
        return asyncio.run(serve(common, settings))
    except GroupingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
