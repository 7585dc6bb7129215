"""Prometheus metrics of the splitter, on an injectable registry (tests run several splitters
in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SplitterMetrics:
    """Every metric the splitter exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_in = Counter(
            "ofa_splitter_records_in_total",
            "Records consumed from the input topic, per input partition.",
            ["partition"],
            registry=registry,
        )
        self.records_out = Counter(
            "ofa_splitter_records_out_total",
            "Records written to a derived topic, per group (counted at commit).",
            ["group"],
            registry=registry,
        )
        self.dlq = Counter(
            "ofa_splitter_dlq_total",
            "Records written to the dead-letter topic, per error kind (counted at commit).",
            ["kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "ofa_splitter_dropped_total",
            "Records of assets without a group, dropped because no default group is set.",
            registry=registry,
        )
        self.regrouped = Counter(
            "ofa_splitter_regrouped_total",
            "Assets whose group was set or changed (changelog writes).",
            registry=registry,
        )
        self.groups_created = Counter(
            "ofa_splitter_groups_announced_total",
            "Groups whose topic this process created or confirmed and announced.",
            registry=registry,
        )
        self.transactions = Counter(
            "ofa_splitter_transactions_total",
            "Transactions ended, per result (commit or abort).",
            ["result"],
            registry=registry,
        )
        self.commit_latency = Histogram(
            "ofa_splitter_commit_seconds",
            "Time to commit one cycle's transactions (offsets + end transaction).",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.cycle_records = Histogram(
            "ofa_splitter_cycle_records",
            "Input records per transaction cycle (batches grow under load).",
            buckets=(1, 10, 100, 1000, 5000, 20000, 100000),
            registry=registry,
        )
        self.lag = Gauge(
            "ofa_splitter_consumer_lag",
            "Input records not yet committed, per assigned input partition (read_committed).",
            ["partition"],
            registry=registry,
        )
        self.assigned = Gauge(
            "ofa_splitter_assigned_partitions",
            "Input partitions this process owns.",
            registry=registry,
        )
        self.table_size = Gauge(
            "ofa_splitter_assets",
            "Assets in the asset -> group table of the owned partitions.",
            registry=registry,
        )
        self.strategy_table = Gauge(
            "ofa_splitter_strategy_table_entries",
            "Entries in the grouping strategy's global table (the UNS map's grouped assets).",
            registry=registry,
        )
        self.restore_seconds = Histogram(
            "ofa_splitter_restore_seconds",
            "Time to restore the table of newly assigned partitions from the changelog.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
            registry=registry,
        )
