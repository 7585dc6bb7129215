"""The shared layout: defaults, name building, namespacing, env variables and their aliases."""

from __future__ import annotations

import logging

import pytest

from ofa_contract.layout import DEFAULT_LAYOUT, KafkaHeaders, Layout, NatsHeaders
from ofa_contract.settings import SettingsError


def test_defaults_are_the_documented_names() -> None:
    lay = Layout()
    assert (lay.input_topic, lay.group_topic_prefix, lay.groups_topic) == (
        "ofa_assets",
        "asset_stream_",
        "ofa_groups",
    )
    assert (lay.changelog_topic, lay.dlq_topic, lay.uns_map_topic) == (
        "ofa_splitter_assets",
        "ofa_assets_dlq",
        "asset_to_uns_map_topic",
    )
    assert (lay.stream, lay.stream_subject_prefix, lay.live_subject_prefix) == (
        "OFA_ASSETS",
        "ofa.asset",
        "asset",
    )
    assert (lay.state_bucket, lay.edges_bucket, lay.bridges_bucket) == (
        "asset_state",
        "ofa_edges",
        "ofa_bridges",
    )


def test_names_are_built_with_encoded_tokens() -> None:
    lay = Layout()
    assert lay.stream_subject("A 1", "x.y") == "ofa.asset.A_201.x_2Ey"
    assert lay.stream_filter("A1") == "ofa.asset.A1.*"
    assert lay.stream_filter("A1", "Temp") == "ofa.asset.A1.Temp"
    assert lay.stream_subjects() == "ofa.asset.>"
    assert lay.live_subject("A1", "Temp") == "asset.A1.Temp"
    assert lay.live_filter("A1") == "asset.A1.*"
    assert lay.live_republish() == "asset.>"
    assert lay.state_key("A1", "Temp") == "A1.Temp"
    assert lay.state_filter("A.1") == "A_2E1.*"
    assert Layout.msg_id("asset_stream_wc", 2, 17) == "asset_stream_wc:2:17"
    assert lay.group_topic("WC 1") == "asset_stream_WC_201"
    assert lay.group_from_topic("asset_stream_WC_201") == "WC 1"
    with pytest.raises(ValueError):
        lay.group_from_topic("ofa_groups")
    assert lay.group_topic_pattern() == "^asset_stream_.*"


def test_one_header_name_per_meaning_per_transport() -> None:
    assert KafkaHeaders.GROUP == "ofa-group"
    assert NatsHeaders.GROUP == "Ofa-Group"
    assert NatsHeaders.MSG_ID == "Nats-Msg-Id"


def test_namespaced_prefixes_every_name() -> None:
    lay = Layout().namespaced("t1_")
    assert lay.namespace == "t1_"
    for field in (
        "input_topic",
        "group_topic_prefix",
        "groups_topic",
        "changelog_topic",
        "dlq_topic",
        "uns_map_topic",
        "stream",
        "stream_subject_prefix",
        "live_subject_prefix",
        "state_bucket",
        "edges_bucket",
        "bridges_bucket",
    ):
        assert getattr(lay, field) == "t1_" + getattr(DEFAULT_LAYOUT, field), field
    assert lay.group_topic("g") == "t1_asset_stream_g"
    assert lay.stream_subject("A", "b") == "t1_ofa.asset.A.b"
    with pytest.raises(ValueError, match="namespace"):
        Layout().namespaced("a.b")


def test_from_env_reads_unprefixed_names_and_the_namespace() -> None:
    env = {"STREAM_NAME": "S", "STATE_BUCKET": "kv", "OFA_NAMESPACE": "dev_"}
    lay = Layout.from_env(env)
    assert lay.stream == "dev_S"
    assert lay.state_bucket == "dev_kv"
    assert lay.input_topic == "dev_ofa_assets"
    assert lay.namespace == "dev_"
    assert Layout.from_env({}) == Layout()


def test_old_names_are_aliases_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    from ofa_contract import settings

    settings._warned.discard("EDGE_STREAM")
    settings._warned.discard("ROUTER_GROUP_TOPIC_PREFIX")
    env = {"EDGE_STREAM": "OLD", "ROUTER_GROUP_TOPIC_PREFIX": "p_"}
    with caplog.at_level(logging.WARNING, logger="ofa_serving"):
        first = Layout.from_env(env)
        second = Layout.from_env(env)
    assert first == second
    assert first.stream == "OLD" and first.group_topic_prefix == "p_"
    lines = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert sorted(lines) == [
        "EDGE_STREAM is deprecated and will be removed in the next release; use STREAM_NAME",
        "ROUTER_GROUP_TOPIC_PREFIX is deprecated and will be removed in the next release; "
        "use GROUP_TOPIC_PREFIX",
    ]


def test_the_new_name_wins_over_an_alias() -> None:
    lay = Layout.from_env({"STREAM_NAME": "NEW", "BRIDGE_STREAM_NAME": "OLD"})
    assert lay.stream == "NEW"


def test_a_bad_namespace_names_the_variable() -> None:
    with pytest.raises(ValueError, match="namespace"):
        Layout.from_env({"OFA_NAMESPACE": "a b"})
    with pytest.raises(SettingsError, match="STREAM_NAME"):
        Layout.from_env({"STREAM_NAME": "[1]"})
