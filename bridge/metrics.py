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
    gap_checks = counter(
        "gap_checks", "Checks of the owned partitions against the stream (gap watcher)"
    )
    gap_check_errors = counter(
        "gap_check_errors", "Gap checks that failed (NATS or Kafka unreachable); retried"
    )
    gap_rescans = counter(
        "gap_rescans",
        "Times the stream no longer held a message read before (it lost messages) and its "
        "last duplicate window was read again",
    )
    gaps_detected = counter(
        "gaps_detected",
        "Records JetStream lost after acknowledging them that Kafka still holds, per group",
        ("group",),
    )
    gaps_repaired = counter(
        "gaps_repaired",
        "Lost records re-published from Kafka (same Nats-Msg-Id) and stored again, per group",
        ("group",),
    )
    gaps_dismissed = counter(
        "gaps_dismissed",
        "Offsets missing from the stream that are not lost, per reason (not_a_record: "
        "transaction marker or aborted record; source_duplicate: a second copy of a source "
        "record, skipped on purpose; deduplicated: the stream's duplicate window still "
        "knows it; undecodable: never bridged)",
        ("reason",),
    )
    gaps_unrecoverable = counter(
        "gaps_unrecoverable",
        "Offsets missing from the stream that Kafka no longer holds either (retention): "
        "records among them are lost for good",
    )
    gap_states_restored = counter(
        "gap_states_restored",
        "asset_state items set back to the newer value after an older record was re-published",
    )
