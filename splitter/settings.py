"""Settings of `ofa-serving split` (environment variables ``SPLIT_*``).

The input topic and the Kafka address come from :class:`ofa_contract.settings.CommonSettings`
(``INPUT_TOPIC``, ``KAFKA_BOOTSTRAP_SERVERS``). Every other topic name, the consumer group and the
transactional-id prefix are settings, so several deployments (or tests) can share one cluster.
"""

from __future__ import annotations

import msgspec

from ofa_contract import topics
from ofa_contract.events import DEFAULT_MAX_RECORD_BYTES
from ofa_contract.naming import GROUP_TOPIC_PREFIX


class SplitterSettings(msgspec.Struct, kw_only=True, frozen=True):
    """``SPLIT_<FIELD>`` environment variables; defaults in the field comments."""

    #: Kafka consumer group of the splitter instances.
    group_id: str = "ofa-splitter"
    #: Transactional ids are ``<prefix>-<input topic>-<partition>`` (one producer per partition).
    transactional_id_prefix: str = "ofa-splitter"
    #: Derived topics are ``<topic_prefix><encoded group>``.
    topic_prefix: str = GROUP_TOPIC_PREFIX
    #: Compacted topic announcing every group (key = group, value = GroupAnnouncement JSON).
    groups_topic: str = topics.GROUPS_TOPIC
    #: Compacted changelog of the asset -> group table (one partition per input partition).
    changelog_topic: str = topics.CHANGELOG_TOPIC
    #: Dead-letter topic for records that break the contract.
    dlq_topic: str = topics.DLQ_TOPIC
    #: Group of assets that have none yet; empty = drop such records (they are counted).
    default_group: str = topics.DEFAULT_GROUP
    #: Drop (and count) records of assets without a group instead of using ``default_group``.
    #: (An empty environment variable means "unset", so "empty default group" is spelled this way.)
    drop_ungrouped: bool = False
    #: Grouping strategy: an entry-point name of group ``ofa_serving.grouping``.
    grouping: str = "attribute"
    #: For ``attribute``: the data item id whose value is the group (any UNS level).
    group_attribute: str = "workcenter"
    #: For ``mapping``: path of the mapping file (JSON object or ``<pattern> <group>`` lines).
    mapping_file: str = ""
    #: Extra options passed to the strategy's ``from_options`` (JSON object).
    grouping_options: dict[str, str] = msgspec.field(default_factory=dict)
    #: Records with a larger value go to the dead-letter topic as ``too_large``.
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    #: ``max.message.bytes`` of the dead-letter topic, so that too-large records fit there whole.
    dlq_max_bytes: int = 8 * 1024 * 1024
    #: Partitions of a derived topic created on first use.
    topic_partitions: int = 3
    #: Replication factor of created topics (derived and internal).
    topic_replication: int = 1
    #: ``retention.ms`` of derived topics (-1 = forever).
    topic_retention_ms: int = 7 * 24 * 3600 * 1000
    #: Upper bound on the time a transaction stays open while more input keeps arriving.
    max_commit_interval_ms: int = 100
    #: Upper bound on the records of one transaction cycle.
    max_batch_records: int = 20000
    #: How long an idle poll waits (bounds shutdown and lag-metric latency, not record latency).
    poll_timeout_ms: int = 200
    #: Transaction timeout: the broker aborts a transaction left open this long by a dead owner.
    transaction_timeout_ms: int = 30000
    #: Producer retry backoff. aiokafka's default (100 ms) is paid on every CONCURRENT_TRANSACTIONS
    #: answer the broker gives while it still writes the previous commit's markers.
    txn_retry_backoff_ms: int = 5
    #: Retry delay of the first AddPartitionsToTxn of a transaction answered CONCURRENT_TRANSACTIONS
    #: (the broker still writes the previous commit's markers, about 1 ms). aiokafka hard-codes
    #: 20 ms; at 1k records/s several percent of the transactions start that way.
    txn_start_retry_ms: int = 1
    #: Consumer group session timeout (how fast a killed instance's partitions move).
    session_timeout_ms: int = 10000
    #: Consumer group heartbeat interval.
    heartbeat_interval_ms: int = 3000
    #: Deadline for restoring the table of a newly assigned partition from the changelog.
    restore_timeout_s: float = 120.0
    #: Operations HTTP server (/health /ready /metrics); port 0 = pick a free port.
    ops_host: str = "127.0.0.1"
    ops_port: int = 9102

    def __post_init__(self) -> None:
        positive = (
            "max_record_bytes",
            "dlq_max_bytes",
            "topic_partitions",
            "topic_replication",
            "max_commit_interval_ms",
            "max_batch_records",
            "poll_timeout_ms",
            "transaction_timeout_ms",
            "session_timeout_ms",
            "heartbeat_interval_ms",
            "txn_retry_backoff_ms",
            "txn_start_retry_ms",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"SPLIT_{name.upper()} must be > 0, got {getattr(self, name)}")
        required = (
            "group_id",
            "transactional_id_prefix",
            "topic_prefix",
            "groups_topic",
            "changelog_topic",
            "dlq_topic",
            "grouping",
        )
        for name in required:
            if not getattr(self, name):
                raise ValueError(f"SPLIT_{name.upper()} must not be empty")

    def fallback_group(self) -> str:
        """The group of assets without one; empty means drop."""
        return "" if self.drop_ungrouped else self.default_group

    def grouping_config(self) -> dict[str, str]:
        """The options handed to the grouping strategy."""
        opts = {"attribute": self.group_attribute, "path": self.mapping_file}
        opts.update(self.grouping_options)
        return opts
