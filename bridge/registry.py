"""The worker registry: each worker's heartbeat in the layout's ``bridges_bucket`` KV bucket,
which the router reads to show who owns which group.

The registry has its own NATS connection (the publisher's is torn down on every fault). It
reconnects forever; a client that gave up anyway (a finite policy) is closed for good, so the
next heartbeat replaces it. A failing heartbeat is counted and logged once per outage: before,
a registry client that exhausted nats.py's default ~2 minutes of reconnects was never replaced
and the failure was swallowed, so the router showed no owner while data still flowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client as NatsClient

from bridge.metrics import BridgeMetrics
from bridge.settings import BridgeSettings
from bridge.stream_setup import ensure_registry
from ofa_contract.layout import Layout
from ofa_contract.registry import BridgeEntry
from ofa_contract.runtime import get_logger
from ofa_contract.runtime.connect import ReconnectPolicy, connect_nats

log = get_logger("bridge", __name__)

_KV_KEY_BAD = re.compile(r"[^-/_=.a-zA-Z0-9]")


@dataclasses.dataclass(eq=False)
class Registry:
    """Heartbeats of one worker; :meth:`beat` never raises."""

    nats_url: str
    layout: Layout
    settings: BridgeSettings
    metrics: BridgeMetrics
    #: The groups this worker owns now (read at each heartbeat).
    owned_groups: Callable[[], list[str]]
    #: Reconnect policy of the registry connection (tests use a finite one).
    policy: ReconnectPolicy = ReconnectPolicy.FOREVER
    client: NatsClient | None = dataclasses.field(default=None, init=False)
    _failing: bool = dataclasses.field(default=False, init=False)

    @property
    def key(self) -> str:
        """This worker's key in the bucket."""
        return _KV_KEY_BAD.sub("_", self.settings.worker_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat every ``heartbeat_s`` until ``stop`` is set.

        Its own task: connecting with the forever policy waits as long as NATS is away.
        """
        while not stop.is_set():
            await self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.heartbeat_s)

    async def beat(self) -> None:
        """Write the heartbeat; a failure is counted, logged once per outage, retried later."""
        try:
            await self._put()
        except Exception as exc:
            self.metrics.heartbeat_failures.inc()
            if not self._failing:
                self._failing = True
                log.warning(
                    "registry heartbeat failed (retried every %.1fs; the router shows no owner "
                    "for this worker's groups until it works): %s: %s",
                    self.settings.heartbeat_s,
                    type(exc).__name__,
                    exc,
                    extra={"bucket": self.layout.bridges_bucket},
                )
            return
        if self._failing:
            self._failing = False
            log.info("registry heartbeat restored")

    async def _put(self) -> None:
        nc = self.client
        if nc is None or nc.is_closed:
            # A client that exhausted its reconnect attempts stays closed: replace it.
            self.client = None
            nc = await connect_nats(
                self.nats_url,
                f"ofa-bridge-ctl-{self.settings.worker_id}",
                policy=self.policy,
                log=log,
            )
            self.client = nc
        kv = await ensure_registry(nc.jetstream(), self.layout, self.settings)
        entry = BridgeEntry(
            id=self.settings.worker_id,
            groups=self.owned_groups(),
            updated_ms=int(time.time() * 1000),
        )
        await kv.put(self.key, msgspec.json.encode(entry))

    async def close(self) -> None:
        """Remove this worker's entry (best effort) and close the connection."""
        nc = self.client
        if nc is None:
            return
        with contextlib.suppress(Exception):
            kv = await nc.jetstream().key_value(self.layout.bridges_bucket)
            await kv.delete(self.key)
        with contextlib.suppress(Exception):
            await nc.close()
