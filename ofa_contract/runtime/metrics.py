"""One builder for a component's Prometheus metrics, so every process names them alike.

Each metric is registered on the component's own registry (tests run several processes in one
interpreter) under ``ofa_<component>_<name>`` (:func:`~ofa_contract.runtime.logs.metric_name`).
Counters may be given with or without ``_total``: prometheus_client adds it either way.
Components declare their metrics in a :class:`MetricSet`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ofa_contract.runtime.logs import metric_name

M = TypeVar("M", Counter, Gauge, Histogram)


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


class Declared(Generic[M]):
    """A metric declared in a :class:`MetricSet`'s body; each instance of the set registers its
    own copy (on its own registry), which the attribute then returns."""

    def __init__(self, build: Callable[[MetricFactory], M]) -> None:
        self.build: Callable[[MetricFactory], M] = build
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    @overload
    def __get__(self, obj: None, owner: type) -> Declared[M]: ...
    @overload
    def __get__(self, obj: MetricSet, owner: type) -> M: ...
    def __get__(self, obj: MetricSet | None, owner: type) -> Declared[M] | M:
        if obj is None:
            return self
        metric: M = obj.metrics[self.attr]
        return metric


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Declared[Counter]:
    """Declare the counter ``ofa_<component>_<name>`` in a :class:`MetricSet`."""
    return Declared(lambda m: m.counter(name, doc, labels))


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Declared[Gauge]:
    """Declare the gauge ``ofa_<component>_<name>`` in a :class:`MetricSet`."""
    return Declared(lambda m: m.gauge(name, doc, labels))


def histogram(
    name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
) -> Declared[Histogram]:
    """Declare the histogram ``ofa_<component>_<name>`` in a :class:`MetricSet`."""
    return Declared(lambda m: m.histogram(name, doc, buckets, labels))


class MetricSet:
    """Every metric of one component, declared in the class body with :func:`counter`,
    :func:`gauge` and :func:`histogram`; ``component`` names them ``ofa_<component>_*``.

    Each instance registers all of them on ``registry`` (a fresh one when None), so tests can
    run several components in one interpreter.
    """

    component: ClassVar[str]

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        factory = MetricFactory(self.component, registry)
        self.registry = factory.registry
        self.metrics: dict[str, Any] = {
            name: declared.build(factory)
            for klass in reversed(type(self).__mro__)
            for name, declared in vars(klass).items()
            if isinstance(declared, Declared)
        }
