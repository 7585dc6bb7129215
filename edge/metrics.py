"""Prometheus metrics of one edge node, on a registry of its own (tests run several nodes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class EdgeMetrics:
    """The edge's counters, gauges and the delivery lag histogram."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connections = Gauge("edge_connections", "Open SSE streams", registry=r)
        self.subscriptions = Gauge(
            "edge_asset_subscriptions", "Live NATS subscriptions (one per asset in use)", registry=r
        )
        self.delivered = Counter(
            "edge_events_delivered", "Events queued to clients (one per client)", registry=r
        )
        self.resumes = Counter("edge_resumes", "Streams resumed with Last-Event-ID", registry=r)
        self.resets = Counter(
            "edge_resets", "Reset events sent (position beyond history)", ["reason"], registry=r
        )
        self.slow_cuts = Counter(
            "edge_slow_client_cuts", "Clients cut off because their queue overflowed", registry=r
        )
        self.live_gaps = Counter(
            "edge_live_gaps", "Gaps on the live path detected from sequence headers", registry=r
        )
        self.gap_events_filled = Counter(
            "edge_gap_events_filled", "Events fetched from the stream to fill live gaps", registry=r
        )
        self.history_events = Counter(
            "edge_history_events", "Events replayed from the stream history", registry=r
        )
        self.rejected = Counter("edge_rejected_streams", "Streams refused", ["reason"], registry=r)
        self.lag = Histogram(
            "edge_delivery_lag_seconds",
            "Time from NATS receipt to writing to the client's socket, for frames that waited"
            " in a client's queue (a frame written straight to an idle stream has no wait)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
