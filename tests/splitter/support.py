"""Helpers for the splitter tests: per-test names, an in-process splitter, output readers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from ofa_contract import topics as T
from ofa_contract.settings import CommonSettings
from splitter.engine import Splitter
from splitter.grouping import load_strategy
from splitter.settings import SplitterSettings
from tests.helpers import consume_all, create_topics

REPO = Path(__file__).resolve().parents[2]


class Names(msgspec.Struct, frozen=True):
    """Every Kafka name one test uses, unique to it (tests share the broker)."""

    input: str
    prefix: str
    groups: str
    changelog: str
    dlq: str
    group_id: str
    txn_prefix: str


def names(unique: str) -> Names:
    """Unique topic/group/transactional-id names for one test."""
    return Names(
        input=f"sp{unique}_assets",
        prefix=f"sp{unique}_stream_",
        groups=f"sp{unique}_groups",
        changelog=f"sp{unique}_changelog",
        dlq=f"sp{unique}_dlq",
        group_id=f"sp{unique}_splitter",
        txn_prefix=f"sp{unique}",
    )


def settings_for(n: Names, **overrides: Any) -> SplitterSettings:
    """Splitter settings pointing at the test's own names."""
    base: dict[str, Any] = {
        "group_id": n.group_id,
        "transactional_id_prefix": n.txn_prefix,
        "topic_prefix": n.prefix,
        "groups_topic": n.groups,
        "changelog_topic": n.changelog,
        "dlq_topic": n.dlq,
        "topic_partitions": 2,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
        "ops_port": 0,
    }
    base.update(overrides)
    return SplitterSettings(**base)


def env_for(bootstrap: str, n: Names, ops_port: int, **extra: str) -> dict[str, str]:
    """Environment of a `ofa-serving split` subprocess for the test's names."""
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "INPUT_TOPIC": n.input,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "SPLIT_GROUP_ID": n.group_id,
            "SPLIT_TRANSACTIONAL_ID_PREFIX": n.txn_prefix,
            "SPLIT_TOPIC_PREFIX": n.prefix,
            "SPLIT_GROUPS_TOPIC": n.groups,
            "SPLIT_CHANGELOG_TOPIC": n.changelog,
            "SPLIT_DLQ_TOPIC": n.dlq,
            "SPLIT_TOPIC_PARTITIONS": "2",
            "SPLIT_SESSION_TIMEOUT_MS": "6000",
            "SPLIT_HEARTBEAT_INTERVAL_MS": "1000",
            "SPLIT_OPS_PORT": str(ops_port),
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra)
    return env


def rec(r: object) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """A simulator Record as a (key, value, headers) tuple for helpers.produce."""
    return r.key.encode(), r.value, list(r.headers)  # type: ignore[attr-defined]


async def spawn(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    """Start `python -m compose.cli split` with stdout/stderr appended to ``log_path``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "compose.cli",
            "split",
            env=env,
            cwd=str(REPO),
            stdout=fd,
            stderr=fd,
        )
    finally:
        os.close(fd)


async def make_input(bootstrap: str, n: Names, partitions: int = 3) -> None:
    """Create the test's input topic (large records allowed, for the too_large sample)."""
    await create_topics(
        bootstrap, [n.input], partitions=partitions, config={"max.message.bytes": "4194304"}
    )


@contextlib.asynccontextmanager
async def running_splitter(
    bootstrap: str, n: Names, settings: SplitterSettings | None = None
) -> AsyncIterator[Splitter]:
    """A splitter running in this event loop; stopped gracefully on exit."""
    s = settings or settings_for(n)
    common = CommonSettings(kafka_bootstrap_servers=bootstrap, input_topic=n.input)
    splitter = Splitter(
        common, s, load_strategy(s.grouping, s.grouping_config()), CollectorRegistry()
    )
    stop = asyncio.Event()
    await splitter.start()
    task = asyncio.create_task(splitter.run(stop))
    try:
        await wait_for(lambda: _ready(splitter), 60, "splitter ready")
        yield splitter
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await splitter.close()


async def _ready(splitter: Splitter) -> bool:
    return not await splitter.ready_issues()


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``cond`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def list_topics(bootstrap: str, prefix: str) -> list[str]:
    """Topics whose name starts with ``prefix``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()


async def read_outputs(bootstrap: str, n: Names) -> list[Any]:
    """Every committed record of every derived topic of the test."""
    derived = await list_topics(bootstrap, n.prefix)
    if not derived:
        return []
    return await consume_all(bootstrap, derived, timeout=30)


async def committed_offsets(bootstrap: str, group_id: str) -> dict[TopicPartition, int]:
    """The committed offsets of a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group_id)
        return {tp: om.offset for tp, om in got.items()}
    finally:
        await admin.close()


async def input_ends(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """End offsets of the input topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (desc,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = [TopicPartition(topic, p["partition"]) for p in desc["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def wait_caught_up(bootstrap: str, n: Names, timeout: float = 60) -> None:
    """Wait until the splitter group has committed the whole input."""
    ends = await input_ends(bootstrap, n.input)

    async def done() -> bool:
        got = await committed_offsets(bootstrap, n.group_id)
        return all(got.get(tp, -1) >= end for tp, end in ends.items() if end > 0)

    await wait_for(done, timeout, f"splitter caught up with {ends}")


async def count_committed(bootstrap: str, topics: list[str]) -> int:
    """Number of committed records in ``topics`` (read to the last stable offsets)."""
    recs = await consume_all(bootstrap, topics, timeout=30)
    return len(recs)


def header(rec: Any, name: str) -> bytes | None:
    """The first header ``name`` of a consumer record."""
    for k, v in rec.headers:
        if k == name:
            return bytes(v)
    return None


def by_topic(recs: list[Any]) -> dict[str, list[Any]]:
    """Records grouped by topic."""
    out: dict[str, list[Any]] = defaultdict(list)
    for r in recs:
        out[r.topic].append(r)
    return out


def seq_of(rec: Any) -> int:
    """The simulator's per-asset sequence number of a record."""
    return int(msgspec.json.decode(rec.value)["attributes"]["seq"])


def src_coord(rec: Any) -> tuple[int, int]:
    """(partition, offset) of the input record a derived record came from."""
    p = header(rec, T.H_SRC_PARTITION)
    o = header(rec, T.H_SRC_OFFSET)
    assert p is not None and o is not None, f"derived record without source headers: {rec}"
    return int(p), int(o)


async def read_input(bootstrap: str, topic: str) -> list[Any]:
    """Every record of the (non-transactional) input topic."""
    return await consume_all(bootstrap, [topic], read_committed=False, timeout=30)
