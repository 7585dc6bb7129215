"""Prometheus metrics of one bridge worker, on an injected registry (tests run many workers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class BridgeMetrics:
    """Every metric the worker exports; one instance per worker."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "ofa_bridge_records_bridged_total",
            "Records acknowledged by JetStream (stored or recognised as duplicate), per group",
            ["group"],
            registry=r,
        )
        self.duplicates = Counter(
            "ofa_bridge_duplicates_dropped_total",
            "Publishes JetStream dropped as duplicates (replays after a crash/rebalance/reset)",
            ["group"],
            registry=r,
        )
        self.bad_records = Counter(
            "ofa_bridge_bad_records_total",
            "Records skipped because they do not decode (the splitter should have parked them)",
            ["group", "kind"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "ofa_bridge_publish_latency_seconds",
            "Time from JetStream publish to its ack",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.in_flight = Gauge(
            "ofa_bridge_acks_in_flight", "JetStream publishes awaiting their ack", registry=r
        )
        self.lag = Gauge(
            "ofa_bridge_lag_records",
            "Records in Kafka not yet committed by this worker, per owned group",
            ["group"],
            registry=r,
        )
        self.owned_groups = Gauge(
            "ofa_bridge_owned_groups", "Groups whose topic this worker owns", registry=r
        )
        self.resets = Counter(
            "ofa_bridge_nats_resets_total",
            "NATS connection resets (disconnect, error ack or ack timeout) followed by a resend",
            ["reason"],
            registry=r,
        )
        self.resent = Counter(
            "ofa_bridge_resent_total", "Publishes sent again after a connection reset", registry=r
        )
        self.paused = Gauge(
            "ofa_bridge_consumption_paused",
            "1 while Kafka consumption is paused for backpressure",
            registry=r,
        )
        self.commits = Counter("ofa_bridge_commits_total", "Kafka offset commits", registry=r)
        self.heartbeat_failures = Counter(
            "ofa_bridge_heartbeat_failures_total",
            "Registry heartbeats (ofa_bridges) that failed; retried every heartbeat interval",
            registry=r,
        )
        self.openfactory_published = Counter(
            "ofa_bridge_openfactory_published_total",
            "Core NATS messages published in OpenFactory's layout (<KEY>.<ID>)",
            registry=r,
        )
        self.openfactory_skipped = Counter(
            "ofa_bridge_openfactory_skipped_total",
            "Stored records not published in OpenFactory's layout, per reason (subject or "
            "payload the layout cannot carry)",
            ["reason"],
            registry=r,
        )
        self.openfactory_errors = Counter(
            "ofa_bridge_openfactory_publish_errors_total",
            "OpenFactory-layout publishes that failed (connection lost right after the ack)",
            registry=r,
        )
