"""The edge's heartbeat entry in the ``ofa_edges`` KV bucket (so the router can pick an edge).

The bucket has a TTL: an edge that dies stops refreshing and its entry expires; an edge that
stops cleanly deletes its entry at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from ofa_contract.naming import encode_token
from ofa_contract.registry import EdgeEntry
from ofa_contract.runtime import cancel_and_wait, get_logger

log = get_logger("edge", "registry")


async def open_bucket(nc: NatsClient, bucket: str, ttl_s: float, replicas: int = 1) -> KeyValue:
    """The registry bucket, created with a TTL and ``replicas`` when it does not exist yet."""
    js = nc.jetstream()
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=bucket, ttl=ttl_s, history=1, replicas=replicas)
        )


class Registration:
    """Publishes this edge's :class:`EdgeEntry` every ``interval_s`` until stopped."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        bucket: str,
        edge_id: str,
        url: str,
        groups: list[str],
        max_connections: int,
        connections: Callable[[], int],
        interval_s: float,
        ttl_s: float,
        replicas: int = 1,
    ) -> None:
        self.nc = nc
        self.bucket = bucket
        self.key = encode_token(edge_id)
        self.entry = EdgeEntry(id=edge_id, url=url, groups=groups, max_connections=max_connections)
        self.connections = connections
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.replicas = replicas
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register once (errors propagate), then keep refreshing in the background."""
        self._kv = await open_bucket(self.nc, self.bucket, self.ttl_s, self.replicas)
        await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _beat(self) -> None:
        assert self._kv is not None
        entry = msgspec.structs.replace(
            self.entry, connections=self.connections(), updated_ms=int(time.time() * 1000)
        )
        await self._kv.put(self.key, msgspec.json.encode(entry))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._beat()
            except Exception as exc:  # NATS down: keep trying; the entry may expire meanwhile
                log.warning("registry heartbeat failed: %s", exc, extra={"bucket": self.bucket})

    async def stop(self) -> None:
        """Stop the heartbeat and delete the entry."""
        await cancel_and_wait(self._task)
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self.key)
