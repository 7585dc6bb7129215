"""The group-singleton assignor: pure logic, no broker."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.assignor import (
    GroupSingletonAssignor,
    MemberState,
    decode_user_data,
    encode_user_data,
    plan,
)

TOPICS = [f"asset_stream_G{i}" for i in range(5)]


def _members(
    owned: dict[str, list[str]], topics: list[str], epoch: int = 1
) -> dict[str, MemberState]:
    return {m: MemberState(frozenset(topics), frozenset(o), epoch) for m, o in owned.items()}


def _owner_map(result: dict[str, list[str]]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for m, ts in result.items():
        for t in ts:
            assert t not in owners, f"{t} assigned twice"
            owners[t] = m
    return owners


def test_three_members_five_groups_each_group_once_and_balanced() -> None:
    result = plan(_members({"a": [], "b": [], "c": []}, TOPICS), TOPICS)
    owners = _owner_map(result)
    assert set(owners) == set(TOPICS)
    assert sorted(len(v) for v in result.values()) == [1, 2, 2]


def test_member_leaves_only_its_groups_move() -> None:
    first = plan(_members({"a": [], "b": [], "c": []}, TOPICS), TOPICS)
    for gone in ("a", "b", "c"):
        rest = {m: ts for m, ts in first.items() if m != gone}
        second = plan(_members(rest, TOPICS), TOPICS)
        before, after = _owner_map(first), _owner_map(second)
        assert set(after) == set(TOPICS)
        for t, owner in before.items():
            if owner != gone:
                assert after[t] == owner, f"{t} moved although its owner {owner} stayed"
        assert sorted(len(v) for v in second.values()) == [2, 3]


def test_member_joins_minimal_moves_and_balance() -> None:
    first = plan(_members({"a": [], "b": []}, TOPICS), TOPICS)
    owned = {**first, "c": []}
    second = plan(_members(owned, TOPICS), TOPICS)
    before, after = _owner_map(first), _owner_map(second)
    moved = [t for t in TOPICS if before[t] != after[t]]
    assert len(moved) == 1 and after[moved[0]] == "c"
    assert sorted(len(v) for v in second.values()) == [1, 2, 2]


def test_stale_claim_loses_to_newer_epoch() -> None:
    members = {
        "old": MemberState(frozenset(TOPICS), frozenset(["asset_stream_G0"]), 3),
        "new": MemberState(frozenset(TOPICS), frozenset(["asset_stream_G0"]), 5),
    }
    result = plan(members, ["asset_stream_G0"])
    assert result == {"old": [], "new": ["asset_stream_G0"]}


def test_topic_only_goes_to_subscribed_member() -> None:
    members = {
        "a": MemberState(frozenset(["t1"])),
        "b": MemberState(frozenset(["t1", "t2"])),
    }
    result = plan(members, ["t1", "t2"])
    assert "t2" in result["b"]
    assert _owner_map(result).keys() == {"t1", "t2"}


def test_user_data_roundtrip_and_garbage() -> None:
    assert decode_user_data(encode_user_data(["b", "a"], 7)) == (frozenset({"a", "b"}), 7)
    assert decode_user_data(b"") == (frozenset(), 0)
    assert decode_user_data(b"\xff\x00garbage") == (frozenset(), 0)


class _Cluster:
    def __init__(self, parts: dict[str, int]) -> None:
        self.parts = parts

    def partitions_for_topic(self, t: str) -> set[int] | None:
        n = self.parts.get(t)
        return set(range(n)) if n else None


def test_aiokafka_adapter_gives_all_partitions_of_a_topic_to_one_member() -> None:
    cluster = _Cluster({t: 3 for t in TOPICS})
    workers = {m: GroupSingletonAssignor() for m in ("m1", "m2", "m3")}
    metas = {m: a.metadata(TOPICS) for m, a in workers.items()}
    out = workers["m1"].assign(cluster, metas)
    seen: dict[str, str] = {}
    for m, assignment in out.items():
        workers[m].on_assignment(assignment)
        for topic, partitions in assignment.assignment:
            assert sorted(partitions) == [0, 1, 2]
            assert topic not in seen
            seen[topic] = m
    assert set(seen) == set(TOPICS)
    # Next round: members report ownership; without membership changes nothing moves.
    metas = {m: a.metadata(TOPICS) for m, a in workers.items()}
    again = workers["m2"].assign(cluster, metas)
    assert {m: [t for t, _ in a.assignment] for m, a in again.items()} == {
        m: [t for t, _ in a.assignment] for m, a in out.items()
    }
    # A topic without metadata yet is left out rather than failing the rebalance.
    metas = {m: a.metadata([*TOPICS, "unknown"]) for m, a in workers.items()}
    later = workers["m1"].assign(cluster, metas)
    assert all(t != "unknown" for a in later.values() for t, _ in a.assignment)


@settings(max_examples=200, deadline=None)
@given(
    n_topics=st.integers(0, 12),
    n_members=st.integers(1, 6),
    prior_seed=st.lists(st.integers(0, 5), max_size=12),
    leave=st.integers(0, 5),
)
def test_properties_balance_and_stickiness(
    n_topics: int, n_members: int, prior_seed: list[int], leave: int
) -> None:
    topics = [f"t{i}" for i in range(n_topics)]
    names = [f"m{i}" for i in range(n_members)]
    owned: dict[str, list[str]] = {m: [] for m in names}
    for t, k in zip(topics, prior_seed, strict=False):
        owned[names[k % n_members]].append(t)
    first = plan(_members(owned, topics), topics)
    loads = [len(v) for v in first.values()]
    assert sum(loads) == n_topics and max(loads) - min(loads) <= 1
    # Stickiness: a member keeps min(previous, its quota) of what it had.
    base = n_topics // n_members
    for m in names:
        assert len(set(first[m]) & set(owned[m])) >= min(len(owned[m]), base)
    if n_members > 1:
        gone = names[leave % n_members]
        rest = {m: ts for m, ts in first.items() if m != gone}
        second = plan(_members(rest, topics), topics)
        loads2 = [len(v) for v in second.values()]
        assert sum(loads2) == n_topics and max(loads2) - min(loads2) <= 1
        b, a = _owner_map(first), _owner_map(second)
        for t in topics:
            if b[t] != gone:
                assert a[t] == b[t]
