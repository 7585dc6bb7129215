"""Prometheus metrics of the splitter, on an injectable registry (tests run several splitters
in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ofa_contract.runtime.metrics import MetricSet, counter, gauge, histogram

_COMMIT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_CYCLE_BUCKETS = (1, 10, 100, 1000, 5000, 20000, 100000)
_RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120)


class SplitterMetrics(MetricSet):
    """Every metric the splitter exports (``ofa_splitter_*``), registered on ``registry``."""

    component = "splitter"

    records_in = counter(
        "records_in", "Records consumed from the input topic, per input partition.", ("partition",)
    )
    records_out = counter(
        "records_out",
        "Records written to a derived topic, per group (counted at commit).",
        ("group",),
    )
    dlq = counter(
        "dlq",
        "Records written to the dead-letter topic, per error kind (counted at commit).",
        ("kind",),
    )
    dropped = counter(
        "dropped", "Records of assets without a group, dropped because no default group is set."
    )
    regrouped = counter("regrouped", "Assets whose group was set or changed (changelog writes).")
    groups_created = counter(
        "groups_announced", "Groups whose topic this process created or confirmed and announced."
    )
    transactions = counter(
        "transactions", "Transactions ended, per result (commit or abort).", ("result",)
    )
    commit_latency = histogram(
        "commit_seconds",
        "Time to commit one cycle's transactions (offsets + end transaction); at_least_once: "
        "one offset commit",
        _COMMIT_BUCKETS,
    )
    cycle_records = histogram(
        "cycle_records",
        "Input records per transaction cycle (batches grow under load).",
        _CYCLE_BUCKETS,
    )
    lag = gauge(
        "consumer_lag",
        "Input records not yet committed, per assigned input partition (read_committed).",
        ("partition",),
    )
    assigned = gauge("assigned_partitions", "Input partitions this process owns.")
    table_size = gauge("assets", "Assets in the asset -> group table of the owned partitions.")
    strategy_table = gauge(
        "strategy_table_entries",
        "Entries in the grouping strategy's global table (the UNS map's grouped assets).",
    )
    restarts = counter(
        "restarts",
        "In-process restarts after a failure that can heal (fenced, broker lost...), "
        "per cause (the exception type).",
        ("cause",),
    )
    restore_seconds = histogram(
        "restore_seconds",
        "Time to restore the table of newly assigned partitions from the changelog.",
        _RESTORE_BUCKETS,
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
