"""Prometheus metrics of one edge node, on a registry of its own (tests run several nodes).

Named ``ofa_edge_*`` (:func:`ofa_contract.runtime.metric_name`); before issue 10 they were
``edge_*``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ofa_contract.runtime import metric_name

_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    """The edge's counters, gauges and the delivery lag histogram."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        gauge, counter = self._gauge, self._counter
        self.connections = gauge("connections", "Open SSE streams")
        self.subscriptions = gauge(
            "asset_subscriptions", "Live NATS subscriptions (one per asset in use)"
        )
        self.delivered = counter("events_delivered", "Events queued to clients (one per client)")
        self.resumes = counter("resumes", "Streams resumed with Last-Event-ID")
        self.resets = counter("resets", "Reset events sent (position beyond history)", ("reason",))
        self.slow_cuts = counter(
            "slow_client_cuts", "Clients cut off because their queue overflowed"
        )
        self.live_gaps = counter(
            "live_gaps", "Gaps on the live path detected from sequence headers"
        )
        self.gap_events_filled = counter(
            "gap_events_filled", "Events fetched from the stream to fill live gaps"
        )
        self.history_events = counter("history_events", "Events replayed from the stream history")
        self.rejected = counter("rejected_streams", "Streams refused", ("reason",))
        self.lag = Histogram(
            metric_name("edge", "delivery_lag_seconds"),
            "Time from NATS receipt to writing to the client's socket",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )

    def _gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(metric_name("edge", name), doc, registry=self.registry)

    def _counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(metric_name("edge", name), doc, labels, registry=self.registry)
