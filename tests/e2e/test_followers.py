"""The end-to-end delivery verdict (pure logic, no servers)."""

from __future__ import annotations

from tests.e2e.followers import Follower, check

#: The asset's first group record: seqs 1-3 went to the default group's topic, 4 on to its
#: workcenter's.
GROUPED_AT = [4]


def _follower(connect_seq: int, seqs: list[int]) -> Follower:
    f = Follower("SIM-ASSET-008", "http://router/asset_stream", connect_seq=connect_seq)
    f.seqs = seqs
    f.ids = list(range(100, 100 + len(seqs)))
    return f


def test_records_of_another_topic_stored_before_the_client_was_live_are_not_lost() -> None:
    # The chaos test's seed 455707910: the workcenter's topic (seqs 4-6 at stream seqs 58-60)
    # was bridged before the default group's (seqs 1-3), and the client went live in between.
    v = check(_follower(6, [1, 2, 3, 7, 8, 9]), 9, GROUPED_AT)

    assert v.missing == []


def test_a_gap_after_a_delivered_seq_of_the_same_topic_is_missing() -> None:
    v = check(_follower(6, [1, 3, 7, 9]), 9, GROUPED_AT)

    assert v.missing == [2, 8]


def test_every_seq_produced_after_the_client_was_live_must_arrive() -> None:
    v = check(_follower(6, [1, 2, 3]), 9, GROUPED_AT)

    assert v.missing == [7, 8, 9]


def test_seqs_produced_before_the_client_was_live_may_be_absent() -> None:
    v = check(_follower(5, [6, 7]), 7, GROUPED_AT)

    assert v.missing == []


def test_a_seq_stored_after_the_first_delivered_event_must_arrive() -> None:
    # Seqs 4-6 produced before the client was live, but stored (stream seqs 150-152) after the
    # first event it received (SSE id 100): delivered live, or lost.
    f = _follower(6, [1, 2, 3, 7])
    stored = {1: 100, 2: 101, 3: 102, 4: 150, 5: 151, 6: 152, 7: 153}

    assert check(f, 7, GROUPED_AT, stored).missing == [4, 5, 6]
    assert check(f, 7, GROUPED_AT, {**stored, 4: 58, 5: 59, 6: 60}).missing == []
