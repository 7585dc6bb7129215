"""Prometheus metrics of one edge node, on a registry of its own (tests run several nodes).

Named ``ofa_edge_*`` (:class:`ofa_contract.runtime.metrics.MetricFactory`); before issue 10
they were ``edge_*``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from ofa_contract.runtime.metrics import MetricFactory

_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics:
    """The edge's counters, gauges and the delivery lag histogram."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        m = MetricFactory("edge", registry)
        self.registry = m.registry
        gauge, counter = m.gauge, m.counter
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
        self.lag = m.histogram(
            "delivery_lag_seconds",
            "Time from NATS receipt to writing to the client's socket, for frames that waited"
            " in a client's queue (a frame written straight to an idle stream has no wait)",
            _LAG_BUCKETS,
        )
