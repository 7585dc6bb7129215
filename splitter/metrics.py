"""Prometheus metrics of the splitter, on an injectable registry (tests run several splitters
in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ofa_contract.runtime.metrics import MetricFactory

_COMMIT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_CYCLE_BUCKETS = (1, 10, 100, 1000, 5000, 20000, 100000)
_RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120)


class SplitterMetrics:
    """Every metric the splitter exports (``ofa_splitter_*``), registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        m = MetricFactory("splitter", registry)
        self.records_in = m.counter(
            "records_in",
            "Records consumed from the input topic, per input partition.",
            ("partition",),
        )
        self.records_out = m.counter(
            "records_out",
            "Records written to a derived topic, per group (counted at commit).",
            ("group",),
        )
        self.dlq = m.counter(
            "dlq",
            "Records written to the dead-letter topic, per error kind (counted at commit).",
            ("kind",),
        )
        self.dropped = m.counter(
            "dropped", "Records of assets without a group, dropped because no default group is set."
        )
        self.regrouped = m.counter(
            "regrouped", "Assets whose group was set or changed (changelog writes)."
        )
        self.groups_created = m.counter(
            "groups_announced",
            "Groups whose topic this process created or confirmed and announced.",
        )
        self.transactions = m.counter(
            "transactions", "Transactions ended, per result (commit or abort).", ("result",)
        )
        self.commit_latency = m.histogram(
            "commit_seconds",
            "Time to commit one cycle's transactions (offsets + end transaction); at_least_once: "
            "one offset commit",
            _COMMIT_BUCKETS,
        )
        self.cycle_records = m.histogram(
            "cycle_records",
            "Input records per transaction cycle (batches grow under load).",
            _CYCLE_BUCKETS,
        )
        self.lag = m.gauge(
            "consumer_lag",
            "Input records not yet committed, per assigned input partition (read_committed).",
            ("partition",),
        )
        self.assigned = m.gauge("assigned_partitions", "Input partitions this process owns.")
        self.table_size = m.gauge(
            "assets", "Assets in the asset -> group table of the owned partitions."
        )
        self.strategy_table = m.gauge(
            "strategy_table_entries",
            "Entries in the grouping strategy's global table (the UNS map's grouped assets).",
        )
        self.restore_seconds = m.histogram(
            "restore_seconds",
            "Time to restore the table of newly assigned partitions from the changelog.",
            _RESTORE_BUCKETS,
        )
