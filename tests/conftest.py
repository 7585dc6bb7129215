"""Test fixtures: real Kafka and real nats-server for the whole session.

Where KAFKA_BOOTSTRAP_SERVERS and NATS_URL are set, tests use those servers. Otherwise the
session starts its own local servers (compose/local_infra.py) on free ports in a temporary work
directory and stops them at the end. No broker is ever mocked.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compose import local_infra
from tests.helpers import Endpoints
from tests.support.names import TestNames


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the long variants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    # Deselected, not skipped: a long variant that did not run is not reported as a pass.
    keep = [i for i in items if "slow" not in i.keywords]
    dropped = [i for i in items if "slow" in i.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """Kafka bootstrap servers and NATS URL of real, running servers."""
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    nats_url = os.environ.get("NATS_URL")
    if kafka and nats_url:
        yield Endpoints(kafka=kafka, nats=nats_url, work_dir=None)
        return
    work = tmp_path_factory.mktemp("infra")
    cfg = local_infra.private_config(work)
    state = asyncio.run(local_infra.up(cfg))
    try:
        yield Endpoints(kafka=state.kafka_bootstrap, nats=state.nats_url, work_dir=Path(work))
    finally:
        local_infra.down(cfg)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, stream and group names (tests share the servers)."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def nats_private(tmp_path: Path) -> Iterator[local_infra.NatsProcess]:
    """A nats-server of the test's own, for tests that stop or restart NATS."""
    cfg = local_infra.private_config(tmp_path)
    proc = local_infra.NatsProcess(cfg)
    proc.start()
    asyncio.run(proc.wait_ready())
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def names(unique: str) -> TestNames:
    """Namespaced layout and consumer-group names of one test (see tests/support/names.py)."""
    return TestNames.for_tag(unique)
