"""Prometheus metrics of one bridge worker, on an injected registry (tests run many workers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ofa_contract.runtime.metrics import MetricFactory

_PUBLISH_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class BridgeMetrics:
    """Every metric the worker exports (``ofa_bridge_*``); one instance per worker."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        m = MetricFactory("bridge", registry)
        self.registry = m.registry
        self.records = m.counter(
            "records_bridged",
            "Records acknowledged by JetStream (stored or recognised as duplicate), per group",
            ("group",),
        )
        self.duplicates = m.counter(
            "duplicates_dropped",
            "Publishes JetStream dropped as duplicates (replays after a crash/rebalance/reset)",
            ("group",),
        )
        self.source_duplicates = m.counter(
            "source_duplicates",
            "Records not published because a record with the same source (ofa_assets) "
            "coordinates was already bridged (splitter replays in at_least_once mode)",
            ("group",),
        )
        self.dedupe_truncated = m.counter(
            "dedupe_metadata_truncated",
            "Source partitions left out of a commit's de-duplication metadata (size limit)",
        )
        self.bad_records = m.counter(
            "bad_records",
            "Records skipped because they do not decode (the splitter should have parked them)",
            ("group", "kind"),
        )
        self.publish_latency = m.histogram(
            "publish_latency_seconds", "Time from JetStream publish to its ack", _PUBLISH_BUCKETS
        )
        self.in_flight = m.gauge("acks_in_flight", "JetStream publishes awaiting their ack")
        self.lag = m.gauge(
            "lag_records",
            "Records in Kafka not yet committed by this worker, per owned group",
            ("group",),
        )
        self.owned_groups = m.gauge("owned_groups", "Groups whose topic this worker owns")
        self.resets = m.counter(
            "nats_resets",
            "NATS connection resets (disconnect, error ack or ack timeout) followed by a resend",
            ("reason",),
        )
        self.resent = m.counter("resent", "Publishes sent again after a connection reset")
        self.paused = m.gauge(
            "consumption_paused", "1 while Kafka consumption is paused for backpressure"
        )
        self.commits = m.counter("commits", "Kafka offset commits")
        self.heartbeat_failures = m.counter(
            "heartbeat_failures",
            "Registry heartbeats (ofa_bridges) that failed; retried every heartbeat interval",
        )
        self.openfactory_published = m.counter(
            "openfactory_published",
            "Core NATS messages published in OpenFactory's layout (<KEY>.<ID>)",
        )
        self.openfactory_skipped = m.counter(
            "openfactory_skipped",
            "Stored records not published in OpenFactory's layout, per reason (subject or "
            "payload the layout cannot carry)",
            ("reason",),
        )
        self.openfactory_errors = m.counter(
            "openfactory_publish_errors",
            "OpenFactory-layout publishes that failed (connection lost right after the ack)",
        )
