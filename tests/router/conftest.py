from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from compose.local_infra import NatsProcess
from tests.helpers import Endpoints
from tests.router.fake_edge import FakeEdge
from tests.router.harness import Stack


@pytest.fixture
async def stack(infra: Endpoints, nats_private: NatsProcess, unique: str) -> AsyncIterator[Stack]:
    """Unique topics, fresh KV buckets on a private nats-server; the test starts the router."""
    s = Stack(infra.kafka, nats_private.url, unique)
    await s.setup_data()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def edge() -> AsyncIterator[FakeEdge]:
    e = FakeEdge()
    await e.start()
    try:
        yield e
    finally:
        await e.stop()
