"""A partition assignor that makes each group's bridge a singleton, balanced and sticky.

Every partition of one derived topic (= one group) goes to the same member, so exactly one
worker publishes a group's records (per-asset order across partitions is then one process's
concern). Groups are spread so that member loads differ by at most one, and a group stays with
its previous owner whenever balance allows: when a worker dies only its groups move; when one
joins, only as many groups move as balance requires.

Stickiness needs memory across rebalances: each member reports the topics it owned and the
assignment epoch it got them in (member ``user_data``); the leader bumps the epoch on each
assignment. If two members claim one topic (a stale member), the higher epoch wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from ofa_contract.runtime import get_logger

log = get_logger("bridge", __name__)


class MemberState(msgspec.Struct, frozen=True):
    """What a member tells the leader: its subscription and what it owned before."""

    subscription: frozenset[str]
    owned: frozenset[str] = frozenset()
    epoch: int = 0


class _UserData(msgspec.Struct, array_like=True):
    """Wire form of a member's (or an assignment's) user data."""

    epoch: int
    owned: list[str] = msgspec.field(default_factory=list)


_ud_encoder = msgspec.msgpack.Encoder()
_ud_decoder = msgspec.msgpack.Decoder(_UserData)


def encode_user_data(owned: Iterable[str], epoch: int) -> bytes:
    """Member user data: the topics it owns and the epoch of that assignment."""
    return _ud_encoder.encode(_UserData(epoch=epoch, owned=sorted(owned)))


def decode_user_data(data: bytes | None) -> tuple[frozenset[str], int]:
    """Inverse of :func:`encode_user_data`; unreadable or empty data means "owned nothing"."""
    if not data:
        return frozenset(), 0
    try:
        ud = _ud_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return frozenset(), 0
    return frozenset(ud.owned), ud.epoch


def plan(members: Mapping[str, MemberState], topics: Iterable[str]) -> dict[str, list[str]]:
    """Decide which member owns which topic (a topic is the unit of assignment).

    Pure function: deterministic for the same input. Loads end within one of each other
    (among members subscribed to the topics), previous owners keep as many topics as that
    allows, and a topic only goes to a member subscribed to it.
    """
    result: dict[str, list[str]] = {m: [] for m in members}
    topic_list = sorted(set(topics))
    if not members or not topic_list:
        return result
    eligible = {t: sorted(m for m, s in members.items() if t in s.subscription) for t in topic_list}
    assignable = [t for t in topic_list if eligible[t]]
    n_members = len(members)
    base, extra = divmod(len(assignable), n_members)

    # Previous owner of each topic: the claimant with the highest epoch (stale members lose).
    prev: dict[str, str] = {}
    for t in assignable:
        claimants = [m for m in eligible[t] if t in members[m].owned]
        if claimants:
            prev[t] = max(claimants, key=lambda m: (members[m].epoch, m))

    # Members that owned more keep more: they get the "base + 1" slots first, fewest moves.
    kept: dict[str, list[str]] = {m: sorted(t for t, o in prev.items() if o == m) for m in members}
    order = sorted(members, key=lambda m: (-len(kept[m]), m))
    quota: dict[str, int] = {}
    extras_left = extra
    for m in order:
        if extras_left > 0 and len(kept[m]) > base:
            quota[m] = base + 1
            extras_left -= 1
        else:
            quota[m] = base
    for m in order:
        if quota[m] == base and extras_left > 0:
            quota[m] = base + 1
            extras_left -= 1
    # Give the spare "base + 1" slots to whoever still lacks one (done above), then keep.
    orphans: list[str] = []
    for m in sorted(members):
        keep = kept[m][: quota[m]]
        result[m].extend(keep)
        orphans.extend(kept[m][quota[m] :])
    orphans.extend(t for t in assignable if t not in prev)

    for t in sorted(orphans):
        candidates = [m for m in eligible[t] if len(result[m]) < quota[m]]
        if not candidates:  # subscriptions differ: fall back to the least loaded eligible
            candidates = eligible[t]
        target = min(candidates, key=lambda m: (len(result[m]), m))
        result[target].append(t)
    for m in result:
        result[m].sort()
    return result


class GroupSingletonAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """aiokafka assignor built on :func:`plan`; one instance per consumer (it keeps state)."""

    name = "ofa-group-singleton"
    version = 0

    def __init__(self) -> None:
        self.owned: frozenset[str] = frozenset()
        self.epoch = 0

    def assign(  # type: ignore[override]
        self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        """Leader side: turn member metadata into per-member partition assignments."""
        states: dict[str, MemberState] = {}
        for member_id, meta in members.items():
            owned, epoch = decode_user_data(meta.user_data)
            states[member_id] = MemberState(frozenset(meta.subscription), owned, epoch)
        topics: dict[str, list[int]] = {}
        for t in sorted({t for s in states.values() for t in s.subscription}):
            parts = cluster.partitions_for_topic(t)
            if not parts:
                log.warning("no partition metadata for topic %s yet; assigned later", t)
                continue
            topics[t] = sorted(parts)
        decided = plan(states, topics)
        epoch = max((s.epoch for s in states.values()), default=0) + 1
        log.info("group assignment epoch %d: %s", epoch, decided)
        return {
            m: ConsumerProtocolMemberAssignment(
                self.version,
                [(t, topics[t]) for t in decided[m]],
                encode_user_data((), epoch),
            )
            for m in members
        }

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        """Member side: subscription plus what this member owns now (for stickiness)."""
        return ConsumerProtocolMemberMetadata(
            self.version, sorted(topics), encode_user_data(self.owned, self.epoch)
        )

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        """Remember what was assigned so that the next join reports it."""
        _, epoch = decode_user_data(assignment.user_data)
        self.epoch = epoch
        self.owned = frozenset(t for t, _ in assignment.assignment)
