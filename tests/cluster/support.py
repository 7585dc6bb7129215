"""Shared checks for the cluster tests: who leads what, and whether replicas caught up."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from typing import Any

import nats.errors
from aiokafka.admin import AIOKafkaAdminClient
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import ServiceUnavailableError

from compose.local_infra import _ephemeral_range


def free_port_block(size: int) -> int:
    """A base port such that base..base+size-1 are all free on 127.0.0.1 right now."""
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, low - size - 1)
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {size} free ports below {low}")


async def describe_topic(bootstrap: str, topic: str) -> dict[str, Any]:
    """aiokafka's description of one topic (partitions with leader, replicas, isr)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
        return next(t for t in described if t["topic"] == topic)
    finally:
        await admin.close()


async def stream_replicas_current(js: JetStreamContext, stream: str) -> tuple[str | None, int]:
    """(leader, number of current followers) of a replicated stream."""
    info = await js.stream_info(stream)
    cl = info.cluster
    if cl is None:
        return None, 0
    current = sum(1 for r in cl.replicas or [] if r.current and not r.offline)
    return cl.leader, current


async def add_stream_when_ready(
    js: JetStreamContext, config: StreamConfig, timeout: float = 60
) -> None:
    """Create a stream once JetStream answers. Right after a node rejoins, the meta group may
    still be electing its leader: the request gets 503, or no answer at all within the
    client's 5 s. Creating a stream with the same config again is a no-op, so a create that
    timed out but was carried out later does no harm."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.add_stream(config)
            return
        except (ServiceUnavailableError, nats.errors.TimeoutError):  # no responders -> 503
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.5)


async def wait_stream_whole(
    js: JetStreamContext, stream: str, followers: int, timeout: float
) -> tuple[str | None, int]:
    """Wait until ``stream`` has a leader and ``followers`` current replicas; return them."""
    deadline = time.monotonic() + timeout
    last: tuple[str | None, int] = (None, 0)
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = await stream_replicas_current(js, stream)
            if last[0] and last[1] >= followers:
                return last
        await asyncio.sleep(0.25)
    return last


async def wait_topics_everywhere(bootstrap: str, topics: list[str], timeout: float = 60) -> None:
    """Wait until EVERY broker's metadata has the topics: a new topic reaches the brokers one
    by one, and a client that asks another broker right after the creation is told it does
    not exist."""
    from aiokafka.protocol.metadata import MetadataRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        nodes = [b.nodeId for b in admin._client.cluster.brokers()]
        deadline = time.monotonic() + timeout
        for node in nodes:
            while True:
                resp = await admin._client.send(node, MetadataRequest(topics))
                known = {
                    t["topic"]
                    for t in resp.to_object()["topics"]
                    if t["error_code"] == 0 and t["partitions"]
                }
                if known >= set(topics):
                    break
                assert time.monotonic() < deadline, f"broker {node} does not know {topics}"
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
