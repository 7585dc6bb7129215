"""Fixtures for edge tests: an edge served by uvicorn in-process on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from compose.local_infra import free_port
from edge.main import EdgeServer, build_server
from edge.node import EdgeNode
from edge.settings import EdgeSettings
from ofa_contract.settings import CommonSettings


class RunningEdge:
    def __init__(self, url: str, state: EdgeNode, server: EdgeServer) -> None:
        self.url = url
        self.state = state
        self.server = server

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.state.metrics.registry.get_sample_value(name, labels or {})
        return float(v or 0.0)


@contextlib.asynccontextmanager
async def running_edge(nats_url: str, **overrides: Any) -> AsyncIterator[RunningEdge]:
    port = free_port()
    overrides.setdefault("id", f"test-edge-{port}")
    settings = EdgeSettings(port=port, gc_freeze=False, **overrides)
    server = build_server(settings, CommonSettings(nats_url=nats_url))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("edge exited during start-up")
        assert time.monotonic() < deadline, "edge did not start"
        await asyncio.sleep(0.02)
    try:
        yield RunningEdge(f"http://127.0.0.1:{port}", server.app_state, server)  # type: ignore[attr-defined]
    finally:
        server.app_state.begin_shutdown()  # type: ignore[attr-defined]
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
