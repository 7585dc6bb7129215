"""The shared test-support package itself: waiting, names, samples, component processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from compose import local_infra
from compose.local_infra import free_port
from tests.support.names import TestNames, layout_for
from tests.support.procs import ComponentProcess
from tests.support.samples import REAL_SAMPLES, SAMPLES, load_samples
from tests.support.wait import wait_until


async def test_wait_until_sync_async_and_event_driven() -> None:
    box = {"n": 0}

    def bump() -> int:
        box["n"] += 1
        return box["n"] if box["n"] >= 3 else 0

    assert await wait_until(bump, interval=0.001) == 3

    async def later() -> str:
        return "ok"

    assert await wait_until(later) == "ok"
    changed = asyncio.Event()
    state: list[int] = []

    async def produce() -> None:
        await asyncio.sleep(0)
        state.append(1)
        changed.set()

    task = asyncio.create_task(produce())
    assert await wait_until(lambda: state, changed=changed, timeout=10) == [1]
    await task


async def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"the moon .*last: 0"):
        await wait_until(lambda: 0, timeout=0.05, what="the moon", interval=0.01)


def test_names_are_namespaced_and_distinct() -> None:
    a, b = TestNames.for_tag("aa"), TestNames.for_tag("bb")
    assert a.layout.input_topic == "taa_ofa_assets"
    assert a.layout.stream != b.layout.stream
    assert a.env()["OFA_NAMESPACE"] == "taa_"
    assert layout_for().namespace != layout_for().namespace


def test_samples_are_vendored_in_the_repository() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in (SAMPLES, REAL_SAMPLES):
        assert path.is_relative_to(root / "tests" / "data")
    samples = load_samples()
    assert samples and all("note" in s for s in samples)


async def test_component_process_ready_then_sigterm(
    nats_private: local_infra.NatsProcess, tmp_path: Path
) -> None:
    port = free_port()
    env = {"NATS_URL": nats_private.url, "EDGE_PORT": str(port), "LOG_FORMAT": "text"}
    edge = ComponentProcess(
        ["edge"], env, tmp_path, name="edge", ops_url=f"http://127.0.0.1:{port}"
    )
    try:  # not ready (no stream until a bridge creates it): wait for /health
        await edge.start(path="/health")
        assert await edge.status("/ready") == 503
        assert await edge.terminate(30) == 0
    finally:
        await edge.stop()
    assert edge.log_tail()  # it logged something, and the tail is readable
