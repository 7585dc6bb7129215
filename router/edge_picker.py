"""Pick the edge for a group: a live registered edge serving it with the fewest connections.

Connection counts in the registry are only as fresh as the last heartbeat, so between heartbeats
every pick adds one to a local estimate; otherwise a burst of new clients would all go to the
edge that looked emptiest at the last heartbeat.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from ofa_contract.registry import EdgeEntry
from router.kv_follow import KvFollower


def serves(entry: EdgeEntry, group: str) -> bool:
    """True when one of the edge's group patterns (fnmatch; ``"*"`` = all) matches ``group``."""
    return any(fnmatchcase(group, p) for p in entry.groups)


class EdgePicker:
    """Edge registry view with a load-aware choice."""

    def __init__(self, js_getter: Callable[[], Any], bucket: str, stale_s: float) -> None:
        self.registry: KvFollower[EdgeEntry] = KvFollower(
            js_getter, bucket, EdgeEntry, stale_s, on_change=self._reset_estimates
        )
        self._picked: dict[str, int] = {}
        self._rng = random.Random()

    def _reset_estimates(self, key: str) -> None:
        # A heartbeat brought a fresh count: forget the guesses made since the previous one.
        self._picked.pop(key, None)

    def start(self) -> None:
        """Start following the registry."""
        self.registry.start()

    async def stop(self) -> None:
        """Stop following the registry."""
        await self.registry.stop()

    def live(self) -> dict[str, EdgeEntry]:
        """Live edges by id."""
        return self.registry.live()

    def candidates(self, group: str) -> list[tuple[str, EdgeEntry]]:
        """(key, entry) of live edges serving ``group`` with room, least loaded first (ties
        shuffled)."""
        out = []
        for key, entry in self.live().items():
            if not serves(entry, group):
                continue
            load = entry.connections + self._picked.get(key, 0)
            if entry.max_connections and load >= entry.max_connections:
                continue
            out.append((load, self._rng.random(), key, entry))
        out.sort(key=lambda t: (t[0], t[1]))
        return [(k, e) for _, _, k, e in out]

    def pick(self, group: str) -> EdgeEntry | None:
        """The edge to send a new client of ``group`` to, or None when none is alive."""
        found = self.candidates(group)
        if not found:
            return None
        key, entry = found[0]
        self.note_pick(key)
        return entry

    def note_pick(self, key: str) -> None:
        """Count one more client towards the edge registered under ``key`` until its next
        heartbeat."""
        self._picked[key] = self._picked.get(key, 0) + 1

    def serving(self, group: str) -> list[str]:
        """Ids of the live edges serving ``group``."""
        return sorted(e.id for e in self.live().values() if serves(e, group))
