"""Name encoding: reversible, legal in NATS tokens and Kafka topics, identity for plain names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ofa_contract.layout import Layout
from ofa_contract.naming import MAX_TOPIC_LENGTH, decode_token, encode_token

KAFKA_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
NATS_TOKEN = re.compile(r"^[^\s.*>]+$")
LAYOUT = Layout()


@pytest.mark.parametrize(
    "name", ["PROVER3018", "Temp", "WC1", "uns_id", "VIRTUAL-TEMP-SENS-001", "avail", "Zact"]
)
def test_ordinary_names_are_unchanged(name: str) -> None:
    assert encode_token(name) == name


@pytest.mark.parametrize("name", ["Paint Shop.2", "LINE 3.ROBOT*1", "axis.x>pos", "a_2F", "é"])
def test_illegal_characters_are_escaped(name: str) -> None:
    token = encode_token(name)
    assert token != name
    assert NATS_TOKEN.match(token) and KAFKA_TOPIC.match(token)
    assert decode_token(token) == name


@given(st.text(min_size=1, max_size=60))
def test_round_trip_and_legal_for_any_unicode(name: str) -> None:
    token = encode_token(name)
    assert decode_token(token) == name
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert NATS_TOKEN.match(token)


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_distinct_names_never_collide(a: str, b: str) -> None:
    if a != b:
        assert encode_token(a) != encode_token(b)


# 19 characters of up to 4 UTF-8 bytes each always fit in a topic name once escaped.
@given(st.text(min_size=1, max_size=19))
def test_group_topic_round_trip(group: str) -> None:
    topic = LAYOUT.group_topic(group)
    assert KAFKA_TOPIC.match(topic)
    assert LAYOUT.group_from_topic(topic) == group


def test_subject_shape() -> None:
    assert LAYOUT.live_subject("PROVER3018", "Zact") == "asset.PROVER3018.Zact"
    subject = LAYOUT.live_subject("LINE 3.ROBOT*1", "axis.x>pos")
    assert subject.count(".") == 2
    assert LAYOUT.group_topic("Paint Shop.2") == "asset_stream_Paint_20Shop_2E2"


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_token("")
    with pytest.raises(ValueError, match="not a derived group topic"):
        LAYOUT.group_from_topic("ofa_assets")
    with pytest.raises(ValueError, match="Kafka allows"):
        LAYOUT.group_topic("x" * MAX_TOPIC_LENGTH)
    with pytest.raises(ValueError, match="illegal character"):
        decode_token("a.b")
