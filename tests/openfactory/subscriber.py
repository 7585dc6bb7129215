"""A client of OpenFactory's NATS fan-out layer, written from its protocol (not from our code):
core NATS, a subscription to ``<ASSET_UUID upper-cased>.*``, JSON payloads whose fields are read
case-insensitively, and the data item id taken from the subject after the first dot, as
OpenFactory's SDK and its applications do."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg


@dataclass
class Received:
    """One message as an OpenFactory application sees it."""

    subject: str
    item_id: str
    fields: dict[str, Any]
    raw: bytes

    def get(self, name: str) -> Any:
        """A top-level field, case-insensitively (``VALUE``/``value``)."""
        return self.fields.get(name.lower())

    @property
    def attributes(self) -> dict[str, Any]:
        """The ``attributes`` object."""
        attrs = self.get("attributes")
        return attrs if isinstance(attrs, dict) else {}


@dataclass
class OpenFactorySubscriber:
    """Subscribes like ``Asset(uuid).subscribe_to_messages(...)``."""

    #: One server, or every node of a cluster (the SDK is given them all).
    url: str | list[str]
    asset_uuid: str
    received: list[Received] = field(default_factory=list)
    _nc: Client | None = None

    @property
    def subject(self) -> str:
        """What OpenFactory's SDK subscribes to."""
        return f"{self.asset_uuid.upper()}.*"

    async def start(self) -> None:
        """Connect (reconnecting forever, as the SDK does) and subscribe; flushed on return."""
        self._nc = await nats.connect(
            self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2
        )
        await self._nc.subscribe(self.subject, cb=self._on_message)
        await self._nc.flush()

    async def _on_message(self, msg: Msg) -> None:
        data = json.loads(msg.data.decode())
        self.received.append(
            Received(
                subject=msg.subject,
                item_id=msg.subject.split(".", 1)[1],
                fields={k.lower(): v for k, v in data.items()},
                raw=msg.data,
            )
        )

    def seqs(self) -> list[int]:
        """``attributes.seq`` of every message received, in arrival order."""
        return [int(r.attributes["seq"]) for r in self.received]

    def tally(self, last: int) -> tuple[int, int, int]:
        """(duplicates, missing, out of order) among the seqs from the first received up to
        ``last``, the asset's last written."""
        seqs = self.seqs()
        if not seqs:
            return 0, last, 0
        dups = len(seqs) - len(set(seqs))
        missing = len(set(range(seqs[0], last + 1)) - set(seqs))
        disorder = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        return dups, missing, disorder

    async def close(self) -> None:
        """Close the connection."""
        if self._nc is not None:
            await self._nc.close()
