"""`ofa-serving split`: run one splitter instance (settings from ``SPLIT_*`` variables, topic
names from the layout: ``INPUT_TOPIC``, ``OFA_NAMESPACE``, ``UNS_MAP_TOPIC``...).

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT in any state: while waiting for Kafka, while
starting, running (the open transaction is committed first), or recovering), 1 when the splitter
failed in a way a restart cannot heal (topics that do not fit the settings), 2 for bad settings.
Failures that can heal (fenced, Kafka errors, restore timeout) restart it in-process
(:mod:`splitter.supervisor`).
"""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import CollectorRegistry

from ofa_contract.layout import Layout
from ofa_contract.runtime import OpsServer, get_logger, install_stop_signals
from ofa_contract.settings import CommonSettings, from_env, settings_parser
from splitter.engine import Splitter
from splitter.grouping import GroupingError, load_strategy
from splitter.metrics import SplitterMetrics
from splitter.settings import SplitterSettings
from splitter.supervisor import Supervisor

log = get_logger("splitter", __name__)


async def serve(common: CommonSettings, settings: SplitterSettings, layout: Layout) -> int:
    """Run a splitter with its ops server until SIGTERM/SIGINT; return the exit code."""
    strategy = load_strategy(settings.grouping, settings.grouping_config(layout.uns_map_topic))
    registry = CollectorRegistry()
    metrics = SplitterMetrics(registry)
    supervisor = Supervisor(
        lambda: Splitter(common, settings, strategy, registry, layout, metrics),
        metrics,
        common.kafka_bootstrap_servers,
        layout.input_topic,
    )
    stop = asyncio.Event()
    install_stop_signals(stop)
    ops = OpsServer(
        settings.ops_host,
        settings.ops_port,
        supervisor.ready_issues,
        registry=registry,
        info={
            "component": "splitter",
            "input_topic": layout.input_topic,
            "group_id": settings.group_id,
            "grouping": settings.grouping,
            "uns_map_topic": layout.uns_map_topic,
            "uns_level": settings.uns_level,
            "group_topic_prefix": layout.group_topic_prefix,
        },
    )
    await ops.start()
    log.info("ops server listening", extra={"host": settings.ops_host, "port": ops.port})
    try:
        return await supervisor.run(stop)
    finally:
        await ops.stop()


def main(argv: list[str]) -> int:
    """Entry point of `ofa-serving split`."""
    parser = settings_parser(
        "ofa-serving split",
        SplitterSettings,
        "Split the input topic into per-group derived topics, exactly once.",
    )
    parser.parse_args(argv)
    common = from_env(CommonSettings)
    settings = from_env(SplitterSettings)
    layout = Layout.from_env()
    try:
        return asyncio.run(serve(common, settings, layout))
    except GroupingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
