"""Settings of `ofa-serving split` (environment variables ``SPLIT_*``).

The Kafka address comes from :class:`ofa_contract.settings.CommonSettings`
(``KAFKA_BOOTSTRAP_SERVERS``), every topic name (input, derived prefix, groups, changelog,
dead letters, UNS map) from :class:`ofa_contract.layout.Layout` (``INPUT_TOPIC``,
``OFA_NAMESPACE``...; the old ``SPLIT_TOPIC_PREFIX``, ``SPLIT_GROUPS_TOPIC``,
``SPLIT_CHANGELOG_TOPIC`` and ``SPLIT_DLQ_TOPIC`` still work for one release). The consumer group
and the transactional-id prefix are settings, so several deployments can share one cluster.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from ofa_contract.events import DEFAULT_MAX_RECORD_BYTES
from ofa_contract.settings import (
    KafkaWorkerSettings,
    NonEmptyStr,
    NonNegativeInt,
    Port,
    PositiveInt,
    Seconds,
)
from ofa_contract.topics import DEFAULT_GROUP


class SplitterSettings(KafkaWorkerSettings, kw_only=True, frozen=True):
    """``SPLIT_<FIELD>`` environment variables; defaults in the field comments."""

    env_prefix: ClassVar[str] = "SPLIT_"

    #: Kafka consumer group of the splitter instances.
    group_id: NonEmptyStr = "ofa-splitter"
    #: Transactional ids are ``<prefix>-<input topic>-<partition>`` (one producer per partition).
    transactional_id_prefix: NonEmptyStr = "ofa-splitter"
    #: Group of assets that have none yet; empty = drop such records (they are counted).
    default_group: str = DEFAULT_GROUP
    #: Drop (and count) records of assets without a group instead of using ``default_group``.
    #: (An empty environment variable means "unset", so "empty default group" is spelled this way.)
    drop_ungrouped: bool = False
    #: Grouping strategy: an entry-point name of group ``ofa_serving.grouping``. ``uns``: the
    #: UNS map decides, else ``workcenter`` records (``attribute``); ``mapping``: a file.
    grouping: NonEmptyStr = "uns"
    #: For ``uns``: the UNS level whose value is the group (OpenFactory's default). The map is
    #: the topic ``UNS_MAP_TOPIC`` (read whole by every instance; a missing topic is waited for).
    uns_level: NonEmptyStr = "workcenter"
    #: For ``attribute``, and ``uns`` when the map names no group: the data item id whose value
    #: is the group (any UNS level).
    group_attribute: str = "workcenter"
    #: For ``mapping``: path of the mapping file (JSON object or ``<pattern> <group>`` lines).
    mapping_file: str = ""
    #: Extra options passed to the strategy's ``from_options`` (JSON object).
    grouping_options: dict[str, str] = msgspec.field(default_factory=dict)
    #: Records with a larger value go to the dead-letter topic as ``too_large``.
    max_record_bytes: PositiveInt = DEFAULT_MAX_RECORD_BYTES
    #: ``max.message.bytes`` of the dead-letter topic, so that too-large records fit there whole.
    dlq_max_bytes: PositiveInt = 8 * 1024 * 1024
    #: Partitions of a derived topic created on first use.
    topic_partitions: PositiveInt = 3
    #: Replication factor of created topics (derived and internal).
    topic_replication: PositiveInt = 1
    #: ``retention.ms`` of derived topics (-1 = forever).
    topic_retention_ms: int = 7 * 24 * 3600 * 1000
    #: ``exactly_once``: records, changelog and input offsets in one Kafka transaction per input
    #: partition and cycle; derived-topic readers (read_committed) see each record once.
    #: ``at_least_once``: idempotent producers, records sent as they arrive, input offsets
    #: committed every ``offset_commit_interval_ms`` after their sends were acknowledged; after a
    #: splitter crash derived topics hold copies, which the bridge drops (SSE/NATS clients still
    #: see each event once). Cost and latency of each: README "Splitter delivery modes".
    delivery: Literal["exactly_once", "at_least_once"] = "exactly_once"
    #: ``at_least_once``: how often (ms) input offsets are committed (a crash replays at most
    #: about this much input; each commit is one broker round trip).
    offset_commit_interval_ms: PositiveInt = 500
    #: ``at_least_once``: how long (ms) the broker may hold a fetch of the input to gather
    #: records (up to 1 MiB): fewer, fuller fetches and sends, for at most this much latency;
    #: 0 = answer each fetch as soon as a record is there. (exactly_once: not used.)
    fetch_batch_ms: NonNegativeInt = 20
    #: Upper bound on the time a transaction stays open while more input keeps arriving.
    max_commit_interval_ms: PositiveInt = 100
    #: Upper bound on the records of one transaction cycle.
    max_batch_records: PositiveInt = 20000
    #: How long an idle poll waits (bounds shutdown and lag-metric latency, not record latency).
    poll_timeout_ms: PositiveInt = 200
    #: Transaction timeout: the broker aborts a transaction left open this long by a dead owner.
    transaction_timeout_ms: PositiveInt = 30000
    #: Producer retry backoff. aiokafka's default (100 ms) is paid on every CONCURRENT_TRANSACTIONS
    #: answer the broker gives while it still writes the previous commit's markers.
    txn_retry_backoff_ms: PositiveInt = 5
    #: Retry delay of the first AddPartitionsToTxn of a transaction answered CONCURRENT_TRANSACTIONS
    #: (the broker still writes the previous commit's markers, about 1 ms). aiokafka hard-codes
    #: 20 ms; at 1k records/s several percent of the transactions start that way.
    txn_start_retry_ms: PositiveInt = 1
    #: Deadline for restoring the table of a newly assigned partition from the changelog.
    restore_timeout_s: Seconds = 120.0
    #: Operations HTTP server (/health /ready /metrics); port 0 = pick a free port.
    ops_port: Port = 9102

    def fallback_group(self) -> str:
        """The group of assets without one; empty means drop."""
        return "" if self.drop_ungrouped else self.default_group

    def grouping_config(self, uns_map_topic: str) -> dict[str, str]:
        """The options handed to the grouping strategy (the UNS map topic from the layout)."""
        opts = {
            "attribute": self.group_attribute,
            "path": self.mapping_file,
            "uns_topic": uns_map_topic,
            "uns_level": self.uns_level,
        }
        opts.update(self.grouping_options)
        return opts
