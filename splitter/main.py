"""`ofa-serving split`: run one splitter instance (settings from ``SPLIT_*`` variables, topic
names from the layout: ``INPUT_TOPIC``, ``OFA_NAMESPACE``, ``UNS_MAP_TOPIC``...).

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT in any state: while waiting for Kafka, while
starting, or running, when the open transaction is committed first), 1 when the splitter failed
(fenced, Kafka errors, restore timeout), 2 for bad settings.
"""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import CollectorRegistry

from ofa_contract.layout import Layout
from ofa_contract.runtime import OpsServer, get_logger, install_stop_signals, wait_for_service
from ofa_contract.settings import CommonSettings, from_env, settings_parser
from splitter.engine import Splitter, SplitterError
from splitter.grouping import GroupingError, load_strategy
from splitter.settings import SplitterSettings
from splitter.topic_admin import probe_kafka

log = get_logger("splitter", __name__)


async def serve(common: CommonSettings, settings: SplitterSettings, layout: Layout) -> int:
    """Run a splitter with its ops server until SIGTERM/SIGINT; return the exit code."""
    strategy = load_strategy(settings.grouping, settings.grouping_config(layout.uns_map_topic))
    registry = CollectorRegistry()
    splitter = Splitter(common, settings, strategy, registry, layout)
    stop = asyncio.Event()
    install_stop_signals(stop)
    ops = OpsServer(
        settings.ops_host,
        settings.ops_port,
        splitter.ready_issues,
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
        if not await _start(splitter, common, layout, stop):
            log.info("stopped before the splitter started")
            return 0
        log.info("splitter started", extra={"input_topic": layout.input_topic})
        await splitter.run(stop)
        log.info("splitter stopped")
        return 0
    except SplitterError as exc:
        log.error("splitter failed", extra={"error": str(exc)})
        return 1
    finally:
        await splitter.close()
        await ops.stop()


async def _start(
    splitter: Splitter, common: CommonSettings, layout: Layout, stop: asyncio.Event
) -> bool:
    """Wait for Kafka (with back-off, reported on /ready), then start; False when ``stop`` came
    first."""
    bootstrap = common.kafka_bootstrap_servers

    async def probe() -> bool:
        await probe_kafka(bootstrap, layout.input_topic)
        return True

    reachable = await wait_for_service(
        f"Kafka at {bootstrap}",
        "KAFKA_BOOTSTRAP_SERVERS",
        probe,
        stop,
        log,
        on_waiting=splitter.note_waiting,
    )
    if not reachable:
        return False
    starting = asyncio.create_task(splitter.start(), name="splitter-start")
    stopping = asyncio.create_task(stop.wait(), name="splitter-stop-wait")
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not starting.done():  # SIGTERM while restoring or joining: stop there
        starting.cancel()
        await asyncio.wait({starting})
        return False
    starting.result()
    return True


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
