"""Prometheus metrics of one edge node, on a registry of its own (tests run several nodes).

Named ``ofa_edge_*`` (:class:`ofa_contract.runtime.metrics.MetricSet`); before issue 10
they were ``edge_*``.
"""

from __future__ import annotations

from ofa_contract.runtime.metrics import MetricSet, counter, gauge, histogram

_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class EdgeMetrics(MetricSet):
    """The edge's counters, gauges and the delivery lag histogram."""

    component = "edge"

    connections = gauge("connections", "Open SSE streams")
    subscriptions = gauge("asset_subscriptions", "Live NATS subscriptions (one per asset in use)")
    delivered = counter("events_delivered", "Events queued to clients (one per client)")
    resumes = counter("resumes", "Streams resumed with Last-Event-ID")
    resets = counter("resets", "Reset events sent (position beyond history)", ("reason",))
    slow_cuts = counter("slow_client_cuts", "Clients cut off because their queue overflowed")
    live_gaps = counter("live_gaps", "Gaps on the live path detected from sequence headers")
    gap_events_filled = counter(
        "gap_events_filled", "Events fetched from the stream to fill live gaps"
    )
    resyncs = counter(
        "resyncs",
        "Feeds re-read from the stream before further live messages (reason: leader_elected,"
        " the stream elected a leader and RePublish may have lost messages)",
        ("reason",),
    )
    history_events = counter("history_events", "Events replayed from the stream history")
    rejected = counter("rejected_streams", "Streams refused", ("reason",))
    lag = histogram(
        "delivery_lag_seconds",
        "Time from NATS receipt to writing to the client's socket, for frames that waited"
        " in a client's queue (a frame written straight to an idle stream has no wait)",
        _LAG_BUCKETS,
    )
