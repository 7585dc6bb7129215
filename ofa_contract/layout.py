"""Every name two processes must agree on: Kafka topics, the JetStream stream and its subjects,
KV buckets, header names and the msg-id format, with the methods that build them.

One :class:`Layout` is read once per process (:meth:`Layout.from_env`, variables without a process
prefix) and passed to every component; no process re-declares these names. ``namespaced`` gives a
copy whose names all carry a prefix, so several stacks (dev, tests, benchmarks) share one Kafka and
one NATS without seeing each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, Final

import msgspec

from ofa_contract.naming import MAX_TOPIC_LENGTH, decode_token, encode_token
from ofa_contract.settings import NonEmptyStr, from_env

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_-]*$")


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    """The names of one deployment (defaults: the standard names OpenFactory clients expect)."""

    env_prefix: ClassVar[str] = ""
    env_names: ClassVar[dict[str, str]] = {"namespace": "OFA_NAMESPACE", "stream": "STREAM_NAME"}
    env_aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        "group_topic_prefix": (
            "SPLIT_TOPIC_PREFIX",
            "BRIDGE_TOPIC_PREFIX",
            "ROUTER_GROUP_TOPIC_PREFIX",
        ),
        "groups_topic": ("SPLIT_GROUPS_TOPIC", "ROUTER_GROUPS_TOPIC"),
        "changelog_topic": ("SPLIT_CHANGELOG_TOPIC", "ROUTER_CHANGELOG_TOPIC"),
        "dlq_topic": ("SPLIT_DLQ_TOPIC",),
        "stream": ("EDGE_STREAM", "BRIDGE_STREAM_NAME"),
        "stream_subject_prefix": ("EDGE_STREAM_SUBJECT_PREFIX", "BRIDGE_STREAM_SUBJECT_PREFIX"),
        "live_subject_prefix": ("EDGE_LIVE_SUBJECT_PREFIX", "BRIDGE_LIVE_SUBJECT_PREFIX"),
        "state_bucket": ("ROUTER_ASSET_STATE_BUCKET", "EDGE_STATE_BUCKET", "BRIDGE_STATE_BUCKET"),
        "edges_bucket": ("EDGE_EDGES_BUCKET", "ROUTER_EDGES_BUCKET"),
        "bridges_bucket": ("BRIDGE_BRIDGES_BUCKET", "ROUTER_BRIDGES_BUCKET"),
    }

    #: Prefix added to every Kafka topic, the stream, the KV buckets and the subject prefixes, so
    #: several stacks share one Kafka and one NATS ("" = the standard names).
    namespace: str = ""
    #: Topic OpenFactory writes every asset event to.
    input_topic: NonEmptyStr = "ofa_assets"
    #: Derived per-group topics are ``<prefix><encoded group>``.
    group_topic_prefix: NonEmptyStr = "asset_stream_"
    #: Compacted topic announcing every group the splitter created a topic for.
    groups_topic: NonEmptyStr = "ofa_groups"
    #: Compacted changelog of the splitter's asset -> group table.
    changelog_topic: NonEmptyStr = "ofa_splitter_assets"
    #: Dead-letter topic for records that break the contract.
    dlq_topic: NonEmptyStr = "ofa_assets_dlq"
    #: Compacted topic mapping asset uuids to UNS paths (read by the ``uns`` grouping).
    uns_map_topic: NonEmptyStr = "asset_to_uns_map_topic"
    #: JetStream stream that stores every record.
    stream: NonEmptyStr = "OFA_ASSETS"
    #: Subjects stored by the stream: ``<prefix>.<uuid>.<id>``.
    stream_subject_prefix: NonEmptyStr = "ofa.asset"
    #: Live subjects the stream republishes to: ``<prefix>.<uuid>.<id>``.
    live_subject_prefix: NonEmptyStr = "asset"
    #: KV bucket of the latest value per (asset, data item).
    state_bucket: NonEmptyStr = "asset_state"
    #: KV bucket of the edge registry.
    edges_bucket: NonEmptyStr = "ofa_edges"
    #: KV bucket where bridge workers register the groups they own.
    bridges_bucket: NonEmptyStr = "ofa_bridges"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Layout:
        """Read the layout from the environment (``OFA_NAMESPACE`` then prefixes every name).

        Old per-process names (``EDGE_STREAM``, ``SPLIT_TOPIC_PREFIX``...) are accepted as
        deprecated aliases, each logged once; raises ``SettingsError`` on a bad value.
        """
        read = from_env(cls, environ=environ)
        base = msgspec.structs.replace(read, namespace="")
        return base.namespaced(read.namespace) if read.namespace else base

    def namespaced(self, ns: str) -> Layout:
        """A copy whose Kafka topics, stream, buckets and subject prefixes start with ``ns``."""
        if not _NAMESPACE_RE.match(ns):
            raise ValueError(f"namespace {ns!r} may only hold A-Z a-z 0-9 _ -")
        return Layout(
            namespace=ns + self.namespace,
            input_topic=ns + self.input_topic,
            group_topic_prefix=ns + self.group_topic_prefix,
            groups_topic=ns + self.groups_topic,
            changelog_topic=ns + self.changelog_topic,
            dlq_topic=ns + self.dlq_topic,
            uns_map_topic=ns + self.uns_map_topic,
            stream=ns + self.stream,
            stream_subject_prefix=ns + self.stream_subject_prefix,
            live_subject_prefix=ns + self.live_subject_prefix,
            state_bucket=ns + self.state_bucket,
            edges_bucket=ns + self.edges_bucket,
            bridges_bucket=ns + self.bridges_bucket,
        )

    # -- Kafka ------------------------------------------------------------------------------

    def group_topic(self, group: str) -> str:
        """The derived topic of ``group`` (encoded); ValueError beyond Kafka's name limit."""
        topic = self.group_topic_prefix + encode_token(group)
        if len(topic) > MAX_TOPIC_LENGTH:
            raise ValueError(
                f"group name {group[:40]!r}... gives a topic of {len(topic)} characters; "
                f"Kafka allows {MAX_TOPIC_LENGTH}"
            )
        return topic

    def group_from_topic(self, topic: str) -> str:
        """Invert :meth:`group_topic`; ValueError for a topic that is not a group topic."""
        prefix = self.group_topic_prefix
        if not topic.startswith(prefix) or len(topic) == len(prefix):
            raise ValueError(f"{topic!r} is not a derived group topic (prefix {prefix!r})")
        return decode_token(topic[len(prefix) :])

    def group_topic_pattern(self) -> str:
        """Regular expression matching every derived topic (for a pattern subscription)."""
        return "^" + re.escape(self.group_topic_prefix) + ".*"

    @staticmethod
    def msg_id(topic: str, partition: int, offset: int) -> str:
        """JetStream de-duplication id of a Kafka record: ``<topic>:<partition>:<offset>``."""
        return f"{topic}:{partition}:{offset}"

    # -- NATS -------------------------------------------------------------------------------

    def stream_subject(self, asset_uuid: str, item_id: str) -> str:
        """The subject a record is stored under: ``ofa.asset.<uuid>.<id>``."""
        return f"{self.stream_subject_prefix}.{encode_token(asset_uuid)}.{encode_token(item_id)}"

    def stream_filter(self, asset_uuid: str, item_id: str | None = None) -> str:
        """Stream filter subject for one asset (every data item) or one data item."""
        tail = encode_token(item_id) if item_id else "*"
        return f"{self.stream_subject_prefix}.{encode_token(asset_uuid)}.{tail}"

    def stream_subjects(self) -> str:
        """The subjects the stream stores: ``ofa.asset.>``."""
        return f"{self.stream_subject_prefix}.>"

    def live_subject(self, asset_uuid: str, item_id: str) -> str:
        """The live (republished) subject of one data item: ``asset.<uuid>.<id>``."""
        return f"{self.live_subject_prefix}.{encode_token(asset_uuid)}.{encode_token(item_id)}"

    def live_filter(self, asset_uuid: str) -> str:
        """Live subject wildcard of every data item of one asset: ``asset.<uuid>.*``."""
        return f"{self.live_subject_prefix}.{encode_token(asset_uuid)}.*"

    def live_republish(self) -> str:
        """The RePublish destination of the stream: ``asset.>``."""
        return f"{self.live_subject_prefix}.>"

    @staticmethod
    def state_key(asset_uuid: str, item_id: str) -> str:
        """Key of one data item's latest value in the state bucket: ``<uuid>.<id>``."""
        return f"{encode_token(asset_uuid)}.{encode_token(item_id)}"

    @staticmethod
    def state_filter(asset_uuid: str) -> str:
        """State bucket key filter of every data item of one asset: ``<uuid>.*``."""
        return f"{encode_token(asset_uuid)}.*"


class KafkaHeaders:
    """Header names on Kafka records the splitter writes (lower-case, Kafka style)."""

    #: Coordinates of the source record in ``ofa_assets`` (derived topics and the DLQ).
    SRC_TOPIC: Final = "ofa-src-topic"
    SRC_PARTITION: Final = "ofa-src-partition"
    SRC_OFFSET: Final = "ofa-src-offset"
    #: The group a derived record belongs to.
    GROUP: Final = "ofa-group"
    #: Derived topics: Kafka's timestamp type of the source record (``0`` CreateTime, ``1``
    #: LogAppendTime). The derived record carries the source's timestamp but is itself always
    #: CreateTime, so this says whether that time was the producer's or the broker's.
    SRC_TIMESTAMP_TYPE: Final = "ofa-src-timestamp-type"
    #: DLQ: the ``BadRecord.kind`` code and the human-readable reason.
    ERROR_KIND: Final = "ofa-error-kind"
    ERROR: Final = "ofa-error"


class NatsHeaders:
    """Header names on NATS messages (the bridge sets the first eight, RePublish the rest)."""

    #: ``<topic>:<partition>:<offset>``: JetStream's de-duplication key (:meth:`Layout.msg_id`).
    MSG_ID: Final = "Nats-Msg-Id"
    ASSET: Final = "Ofa-Asset-Uuid"
    ITEM: Final = "Ofa-Data-Item"
    GROUP: Final = "Ofa-Group"
    #: Kafka record timestamp, milliseconds since the epoch.
    KAFKA_TS: Final = "Ofa-Kafka-Timestamp"
    #: Coordinates of the source record in ``ofa_assets`` (from the derived record's
    #: ``KafkaHeaders.SRC_*``; absent when the Kafka record has none). A derived partition may
    #: hold one source record twice (at-least-once splitting); the gap watcher uses these to
    #: tell a copy skipped on purpose from a lost record.
    SRC_TOPIC: Final = "Ofa-Src-Topic"
    SRC_PARTITION: Final = "Ofa-Src-Partition"
    SRC_OFFSET: Final = "Ofa-Src-Offset"
    STREAM: Final = "Nats-Stream"
    SUBJECT: Final = "Nats-Subject"
    #: Stream sequence of a republished message and the previous one of the same subject.
    SEQUENCE: Final = "Nats-Sequence"
    LAST_SEQUENCE: Final = "Nats-Last-Sequence"


DEFAULT_LAYOUT: Final = Layout()

__all__ = ["DEFAULT_LAYOUT", "KafkaHeaders", "Layout", "NatsHeaders"]
