"""The lag gauge skips partitions the consumer no longer owns (a rebalance in progress); asking
aiokafka about them raised and once ended the worker's lag loop for good (no broker needed)."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings
from bridge.tracker import PartitionTracker
from bridge.worker import BridgeWorker
from ofa_contract.layout import Layout
from ofa_contract.settings import CommonSettings


async def test_lag_skips_partitions_no_longer_assigned() -> None:
    registry = CollectorRegistry()
    worker = BridgeWorker(
        CommonSettings(kafka_bootstrap_servers="127.0.0.1:1", nats_url="nats://127.0.0.1:1"),
        Layout(),
        BridgeSettings(),
        BridgeMetrics(registry),
    )
    owned, gone = TopicPartition("t_WC1", 0), TopicPartition("t_WC2", 0)
    worker.consumer.assign([owned])
    for tp, group in ((owned, "WC1"), (gone, "WC2")):
        worker.trackers[tp] = PartitionTracker(tp, group)
        worker.trackers[tp].committed = 5
    worker._update_lag()  # raised AssertionError('Partition is not assigned') before the fix
    # The partition no longer owned gets no value (and asking about it no longer raises).
    assert registry.get_sample_value("ofa_bridge_lag_records", {"group": "WC2"}) is None
