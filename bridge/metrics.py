"""Prometheus metrics of one bridge worker, on an injected registry (tests run many workers)."""

from __future__ import annotations

from ofa_contract.runtime.metrics import MetricSet, counter, gauge, histogram

_PUBLISH_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class BridgeMetrics(MetricSet):
    """Every metric the worker exports (``ofa_bridge_*``); one instance per worker."""

    component = "bridge"

    records = counter(
        "records_bridged",
        "Records acknowledged by JetStream (stored or recognised as duplicate), per group",
        ("group",),
    )
    duplicates = counter(
        "duplicates_dropped",
        "Publishes JetStream dropped as duplicates (replays after a crash/rebalance/reset)",
        ("group",),
    )
    source_duplicates = counter(
        "source_duplicates",
        "Records not published because a record with the same source (ofa_assets) "
        "coordinates was already bridged (splitter replays in at_least_once mode)",
        ("group",),
    )
    dedupe_truncated = counter(
        "dedupe_metadata_truncated",
        "Source partitions left out of a commit's de-duplication metadata (size limit)",
    )
    bad_records = counter(
        "bad_records",
        "Records skipped because they do not decode (the splitter should have parked them)",
        ("group", "kind"),
    )
    publish_latency = histogram(
        "publish_latency_seconds", "Time from JetStream publish to its ack", _PUBLISH_BUCKETS
    )
    in_flight = gauge("acks_in_flight", "JetStream publishes awaiting their ack")
    lag = gauge(
        "lag_records",
        "Records in Kafka not yet committed by this worker, per owned group",
        ("group",),
    )
    owned_groups = gauge("owned_groups", "Groups whose topic this worker owns")
    resets = counter(
        "nats_resets",
        "NATS connection resets (disconnect, error ack or ack timeout) followed by a resend",
        ("reason",),
    )
    resent = counter("resent", "Publishes sent again after a connection reset")
    paused = gauge("consumption_paused", "1 while Kafka consumption is paused for backpressure")
    commits = counter("commits", "Kafka offset commits")
    heartbeat_failures = counter(
        "heartbeat_failures",
        "Registry heartbeats (ofa_bridges) that failed; retried every heartbeat interval",
    )
    openfactory_published = counter(
        "openfactory_published",
        "Core NATS messages published in OpenFactory's layout (<KEY>.<ID>)",
    )
    openfactory_skipped = counter(
        "openfactory_skipped",
        "Stored records not published in OpenFactory's layout, per reason (subject or "
        "payload the layout cannot carry)",
        ("reason",),
    )
    openfactory_errors = counter(
        "openfactory_publish_errors",
        "OpenFactory-layout publishes that failed (connection lost right after the ack)",
    )
