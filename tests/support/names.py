"""Per-test names, so tests share one Kafka and one NATS without seeing each other."""

from __future__ import annotations

import uuid

import msgspec

from ofa_contract.layout import Layout


def layout_for(tag: str = "") -> Layout:
    """The standard layout with every name prefixed by ``t<tag>_`` (random tag when empty)."""
    return Layout().namespaced(f"t{tag or uuid.uuid4().hex[:10]}_")


class TestNames(msgspec.Struct, frozen=True, kw_only=True):
    """A namespaced layout plus the process knobs tests also namespace (consumer groups,
    transactional ids)."""

    __test__ = False  # not a pytest test class

    layout: Layout
    splitter_group: str
    transactional_id_prefix: str
    bridge_group: str

    @classmethod
    def for_tag(cls, tag: str = "") -> TestNames:
        """Names for one test (``tag``: e.g. the ``unique`` fixture's value)."""
        layout = layout_for(tag)
        ns = layout.namespace
        return cls(
            layout=layout,
            splitter_group=f"{ns}ofa-splitter",
            transactional_id_prefix=f"{ns}ofa-splitter",
            bridge_group=f"{ns}ofa-bridge",
        )

    def env(self) -> dict[str, str]:
        """Environment for a component subprocess: ``OFA_NAMESPACE`` plus the knobs."""
        return {
            "OFA_NAMESPACE": self.layout.namespace,
            "SPLIT_GROUP_ID": self.splitter_group,
            "SPLIT_TRANSACTIONAL_ID_PREFIX": self.transactional_id_prefix,
            "BRIDGE_CONSUMER_GROUP": self.bridge_group,
        }
