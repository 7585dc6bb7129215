"""One builder for a component's Prometheus metrics, so every process names them alike.

Each metric is registered on the component's own registry (tests run several processes in one
interpreter) under ``ofa_<component>_<name>`` (:func:`~ofa_contract.runtime.logs.metric_name`).
Counters may be given with or without ``_total``: prometheus_client adds it either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ofa_contract.runtime.logs import metric_name


class MetricFactory:
    """Builds the ``ofa_<component>_*`` counters, gauges and histograms on one registry."""

    def __init__(self, component: str, registry: CollectorRegistry | None = None) -> None:
        self.component = component
        self.registry = registry if registry is not None else CollectorRegistry()

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        """A counter named ``ofa_<component>_<name>`` (``_total`` is appended on export)."""
        return Counter(self._name(name), doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge named ``ofa_<component>_<name>``."""
        return Gauge(self._name(name), doc, labels, registry=self.registry)

    def histogram(
        self, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        """A histogram named ``ofa_<component>_<name>`` with the given bucket bounds."""
        return Histogram(self._name(name), doc, labels, buckets=buckets, registry=self.registry)

    def _name(self, name: str) -> str:
        return metric_name(self.component, name)
